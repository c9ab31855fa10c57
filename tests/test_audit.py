"""``make audit`` (tools/audit.py): it passes only when pip-audit checked every pin.

pip-audit's advisory service cannot be reached from CI, so these tests give the verdict the
report shapes pip-audit 2.10 prints (the skipped ones exactly as it printed them here, with
the service out of reach), and run the wrapper for real where pip-audit is missing.
"""

import importlib.util
import subprocess
import sys

import pytest

from tests.support.paths import ROOT
from tools.audit import AUDITED, NOT_AUDITED, VULNERABLE, pins, verdict

CONSTRAINTS = ROOT / "constraints.txt"
PINNED = {"alembic": "1.20.1", "waitress": "3.0.2"}


def dependency(name, version, *vulns):
    return {"name": name, "version": version, "vulns": list(vulns)}


def skipped(name, version):
    reason = f"Dependency not found on PyPI and could not be audited: {name} ({version})"
    return {"name": name, "skip_reason": reason}


def test_every_line_of_constraints_txt_is_a_pin_the_audit_reads():
    lines = [line for line in CONSTRAINTS.read_text().splitlines() if line.strip()]
    assert len(pins(CONSTRAINTS)) == len(lines)
    assert pins(CONSTRAINTS)["zope-sqlalchemy"] == "4.1"


def test_a_report_with_every_pin_checked_and_clean_passes():
    report = {"dependencies": [dependency("alembic", "1.20.1"), dependency("waitress", "3.0.2")]}

    assert verdict(report, PINNED) == (
        AUDITED,
        ["audited 2 pinned packages: no known vulnerabilities"],
    )


def test_a_vulnerable_pin_fails_naming_it_and_its_fix():
    vuln = {"id": "GHSA-xxxx", "fix_versions": ["3.0.3"], "aliases": []}
    report = {
        "dependencies": [dependency("alembic", "1.20.1"), dependency("waitress", "3.0.2", vuln)]
    }

    status, lines = verdict(report, PINNED)

    assert status == VULNERABLE
    assert lines == [
        "1 known vulnerabilities in the pins:",
        "waitress 3.0.2: GHSA-xxxx, fixed in 3.0.3",
    ]


@pytest.mark.parametrize(
    "dependencies",
    [
        [skipped("alembic", "1.20.1"), skipped("waitress", "3.0.2")],  # the service out of reach
        [dependency("alembic", "1.20.1"), skipped("waitress", "3.0.2")],
        [dependency("alembic", "1.20.1")],  # a pin missing from the report
    ],
    ids=["all-skipped", "one-skipped", "one-missing"],
)
def test_a_pin_that_was_not_checked_is_not_audited_and_said_plainly(dependencies):
    status, lines = verdict({"dependencies": dependencies}, PINNED)

    assert status == NOT_AUDITED
    assert lines[0].startswith("NOT AUDITED: ")
    assert "network access" in "\n".join(lines)


def test_no_report_at_all_is_not_audited_with_pip_audits_last_words():
    stderr = "Traceback ...\nrequests.exceptions.ConnectionError: Max retries exceeded\n"

    status, lines = verdict(None, PINNED, stderr)

    assert status == NOT_AUDITED
    assert lines[0] == (
        "NOT AUDITED: pip-audit gave no report on the 2 pinned packages: "
        "requests.exceptions.ConnectionError: Max retries exceeded"
    )


def test_the_wrapper_without_pip_audit_exits_2_and_says_not_audited():
    assert importlib.util.find_spec("pip_audit") is None, "pip-audit belongs in .venv-audit"

    done = subprocess.run(
        [sys.executable, "tools/audit.py", str(CONSTRAINTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == NOT_AUDITED
    assert done.stdout == ""
    assert done.stderr.startswith("NOT AUDITED: pip-audit gave no report on the ")
    assert "No module named pip_audit" in done.stderr
