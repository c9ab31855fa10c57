"""``make audit``: pip-audit over the pinned dependencies, and a verdict that cannot lie.

pip-audit asks an advisory service (PyPI's JSON API by default, OSV's with ``-s osv``) about
each pin. When it cannot reach it, it either fails with a connection error or skips every
package as "not found on PyPI" and still prints "No known vulnerabilities found" with exit
status 0. This wrapper runs it with ``--format json`` and passes only if every pin was checked:

- exit 0: every pin audited, no known vulnerability;
- exit 1: vulnerabilities, listed with the releases that fix them;
- exit 2: not audited (the service was unreachable, or some pins were skipped): said plainly.

``make audit`` runs it in a virtualenv of its own, .venv-audit, with pip-audit as
tools/audit-requirements.txt pins it.
"""

import json
import re
import subprocess
import sys

#: ``name==version`` lines of a constraints or requirements file.
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")

AUDITED, VULNERABLE, NOT_AUDITED = 0, 1, 2

USAGE = "usage: python tools/audit.py constraints.txt [pip-audit options, e.g. -s osv]"


def canonical(name):
    """PEP 503's normalised project name, as pip-audit reports it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    """{canonical name: version} of every pin in the file at ``path``."""
    with open(path, encoding="utf-8") as lines:
        found = (PIN.match(line) for line in lines)
        return {canonical(m[1]): m[2] for m in found if m}


def run_pip_audit(path, options):
    """pip-audit's JSON report of ``path``, or None, and what it wrote to stderr."""
    command = [sys.executable, "-m", "pip_audit", "--requirement", path, "--no-deps"]
    command += ["--disable-pip", "--format", "json", "--progress-spinner", "off", *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout), done.stderr
    except ValueError:
        return None, done.stderr


#: What to tell the operator whenever the pins were not all checked.
NEEDS = [
    "Every package 'not found on PyPI', or a connection error, means the advisory service was",
    "out of reach: make audit needs network access to PyPI's JSON API, or with",
    "AUDIT_ARGS='-s osv' to OSV's API.",
]


def verdict(report, pinned, stderr=""):
    """(exit status, the lines to print) for pip-audit's ``report`` of the ``pinned`` packages."""
    if report is None:
        reason = (stderr.strip().splitlines() or ["it printed nothing"])[-1]
        return NOT_AUDITED, [
            f"NOT AUDITED: pip-audit gave no report on the {len(pinned)} pinned packages: {reason}",
            *NEEDS,
        ]
    dependencies = report["dependencies"]
    checked = {canonical(d["name"]) for d in dependencies if "skip_reason" not in d}
    unchecked = sorted(set(pinned) - checked)
    found = [(d, vuln) for d in dependencies for vuln in d.get("vulns", [])]
    lines = [f"{len(found)} known vulnerabilities in the pins:"] if found else []
    for d, vuln in found:
        fixed = ", ".join(vuln["fix_versions"]) or "no release yet"
        lines.append(f"{d['name']} {d['version']}: {vuln['id']}, fixed in {fixed}")
    if unchecked:
        skipped = [d["skip_reason"] for d in dependencies if "skip_reason" in d]
        named = ", ".join(unchecked[:5]) + (", ..." if len(unchecked) > 5 else "")
        return NOT_AUDITED, [
            *lines,
            f"NOT AUDITED: {len(unchecked)} of {len(pinned)} pinned packages were not checked "
            f"({named}); pip-audit says, e.g.: {(skipped or ['nothing'])[0]}",
            "pip-audit's own 'No known vulnerabilities found' does not count them.",
            *NEEDS,
        ]
    if found:
        return VULNERABLE, lines
    return AUDITED, [f"audited {len(pinned)} pinned packages: no known vulnerabilities"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(USAGE, file=sys.stderr)
        return NOT_AUDITED
    path, options = argv[0], argv[1:]
    report, stderr = run_pip_audit(path, options)
    status, lines = verdict(report, pins(path), stderr)
    print("\n".join(lines), file=sys.stdout if status == AUDITED else sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
