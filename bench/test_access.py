"""``make bench``'s server without the access line (bench/access.py) logs everything else.

The benchmark states what the access line costs by serving GET one user from production.ini and
from the same file with the access logger at WARN: the figure means something only if the edit
turns off that logger alone, as the ini file's logging sections are read when pserve starts.
"""

import difflib
import json
import subprocess
import sys

import pytest

from bench.access import COMPARISON, LOGGER, silence_access_log
from tests.support.paths import PRODUCTION_INI
from tests.support.processes import SetupError

#: What pserve does with the ini file's logging sections, then which loggers would write at
#: INFO and at WARNING.
ENABLED = f"""
import json, logging, sys
from pyramid.paster import setup_logging
setup_logging(sys.argv[1])
names = ["{LOGGER}", "myservice", "myservice.data.db", "sqlalchemy.engine"]
print(json.dumps({{
    name: [logging.getLogger(name).isEnabledFor(level) for level in (logging.INFO, logging.WARNING)]
    for name in names
}}))
"""


def enabled(ini):
    done = subprocess.run(
        [sys.executable, "-c", ENABLED, str(ini)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_the_edit_turns_off_the_access_line_and_no_other_log(tmp_path):
    edited = tmp_path / "production.ini"
    edited.write_text(COMPARISON.edit(PRODUCTION_INI.read_text(encoding="utf-8")))

    shipped, silenced = enabled(PRODUCTION_INI), enabled(edited)
    assert shipped[LOGGER] == [True, True]  # as shipped: the line is written
    assert silenced.pop(LOGGER) == [False, True]  # no access line; a warning would still be
    shipped.pop(LOGGER)
    assert silenced == shipped


def test_the_edit_adds_a_logger_and_changes_nothing_else():
    text = PRODUCTION_INI.read_text(encoding="utf-8")
    changed = [
        line
        for line in difflib.ndiff(text.splitlines(), silence_access_log(text).splitlines())
        if line[:2] in ("- ", "+ ")
    ]
    assert changed[:2] == [
        "- keys = root, myservice, sqlalchemy, gunicorn",
        "+ keys = root, myservice, sqlalchemy, gunicorn, access",
    ]
    added = ["", "[logger_access]", "level = WARN", "handlers =", f"qualname = {LOGGER}"]
    assert changed[2:] == [f"+ {line}" for line in added]


def test_the_edit_refuses_an_ini_file_without_loggers_keys():
    with pytest.raises(SetupError, match=r"\[loggers\] has no single 'keys = \.\.\.' line"):
        silence_access_log("[loggers]\nnames = root\n\n[logger_root]\nlevel = WARN\n")
