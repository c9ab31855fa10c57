"""An operator's mistake is one line that says what is wrong and what to do, and a failing exit
status; a traceback means a bug. Each test runs the real command as an operator would."""

import os
import re
import socket
import subprocess

import pytest

from tests.support.database import migrate
from tests.support.paths import DEVELOPMENT_INI, PRODUCTION_INI, ROOT
from tests.support.processes import free_port, venv_command, write_ini

#: Seconds a command gets to fail.
DEADLINE = 60

#: What pserve says of itself before it runs the server.
PSERVE = re.compile(r"Starting server in PID [0-9]+\.")

#: The exit status of an operator's mistake (myservice.data.errors.OperatorError).
MISTAKE = 2


def run(*command, env=None):
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MYSERVICE_SECRET")}
    return subprocess.run(
        [venv_command(command[0]), *map(str, command[1:])],
        env={**environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def the_one_line(result):
    """The one line the command wrote on stderr (after pserve's own "Starting server in PID
    ..."), after checking it failed with no traceback."""
    assert result.returncode == MISTAKE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not PSERVE.fullmatch(line)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["pserve", "pshell"])
def test_production_without_a_database_url_is_one_line_naming_it(command):
    line = the_one_line(run(command, PRODUCTION_INI, env={"MYSERVICE_SECRET": "s" * 48}))

    assert line.startswith("myservice: no database: set DATABASE_URL"), line


def test_gunicorn_without_a_database_url_is_one_line_naming_it():
    result = run("gunicorn", "--paste", PRODUCTION_INI, "--bind", f"127.0.0.1:{free_port()}")

    assert result.returncode == MISTAKE, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "myservice: no database: set DATABASE_URL" in result.stderr


def test_production_without_a_secret_is_one_line_naming_it(db_url):
    line = the_one_line(run("pserve", PRODUCTION_INI, env={"DATABASE_URL": db_url}))

    assert line.startswith("myservice: no secret to sign cursors with: set MYSERVICE_SECRET"), line


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_taken_port_is_one_line_saying_what_to_do(db_url, tmp_path, processes):
    port = free_port()
    ini = write_ini(DEVELOPMENT_INI, tmp_path, port, {"processes": processes})
    with socket.create_server(("127.0.0.1", port)):  # another server has the port
        line = the_one_line(run("pserve", ini, env={"DATABASE_URL": db_url}))

    assert line.startswith(f"myservice: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "stop that one, or change listen in [server:main]" in line


@pytest.mark.parametrize("processes", ["0", "many"])
def test_a_bad_process_count_is_one_line_saying_what_to_do(db_url, tmp_path, processes):
    ini = write_ini(DEVELOPMENT_INI, tmp_path, free_port(), {"processes": processes})

    line = the_one_line(run("pserve", ini, env={"DATABASE_URL": db_url}))

    assert line.startswith(f"myservice: processes = {processes} in [server:main]: "), line
    assert line.endswith("or auto (one per core)"), line


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/myservice", "Connection refused"),
        ("sqlite:////nonexistent-directory/myservice.sqlite", "unable to open database file"),
    ],
    ids=["postgresql-down", "sqlite-unreachable"],
)
@pytest.mark.parametrize(
    "command",
    [
        ("myservice-token", "list", DEVELOPMENT_INI),
        ("myservice-purge", DEVELOPMENT_INI),
        ("myservice-maintenance", DEVELOPMENT_INI, "status"),
    ],
    ids=lambda command: command[0],
)
def test_a_tool_whose_database_is_down_says_so_in_one_line(command, database, reason):
    url = database.format(port=free_port())  # nothing listens there

    line = the_one_line(run(*command, env={"DATABASE_URL": url}))

    assert line.startswith(f"{command[0]}: cannot use the database "), line
    assert reason in line and "DATABASE_URL" in line


def test_a_tool_on_a_database_never_migrated_says_to_migrate_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"

    line = the_one_line(run("myservice-token", "list", DEVELOPMENT_INI, env={"DATABASE_URL": url}))

    assert "is not migrated (no such table: api_tokens)" in line
    assert line.endswith("run alembic -c INI upgrade head first")


def test_alembic_with_its_database_down_fails_in_its_own_one_line():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/myservice"

    result = run("alembic", "-c", PRODUCTION_INI, "upgrade", "head", env={"DATABASE_URL": url})

    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("FAILED: cannot use the database "), result.stdout


def test_alembic_upgrade_says_what_it_did_and_that_there_was_nothing_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    upgrade = ("alembic", "-c", PRODUCTION_INI, "upgrade", "head")  # production logs nothing

    first, again = (run(*upgrade, env={"DATABASE_URL": url}) for _ in range(2))

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stdout.strip().startswith("upgraded the database from base to 00")
    assert first.stdout.strip().endswith("(head)")
    assert again.stdout.strip().endswith("(head): nothing to upgrade")
    migrate(url, "downgrade", "-1")
    assert run(*upgrade, env={"DATABASE_URL": url}).stdout.startswith("upgraded the database from")
