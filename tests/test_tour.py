"""The README's walkthrough, ``docs/tour.sh``, run as a reader runs it: bash and curl against
the real server (``pserve`` in a subprocess, on a free port) over a fresh database, with a token
of the scopes ``read`` and ``write`` in ``TOKEN``. Every step checks its own status, so a step
that no longer answers as the walkthrough says fails ``make test``, on both databases.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.database import migrate, new_token, short_lived_engine
from tests.support.paths import ROOT
from tests.support.servers import running_server

TOUR = ROOT / "docs" / "tour.sh"
README = ROOT / "README.md"

#: Seconds the whole tour may take (about 40 requests; it takes 1 to 3 s on an idle machine).
TOUR_TIMEOUT = 120

LAST_LINE = "tour.sh: every step answered as expected"

#: What each step answers on a fresh database, in order ("STATUS METHOD PATH"): ids start at 1
#: on both databases, and nothing that fails takes an id before the last user is created (a
#: conflicting INSERT takes one from PostgreSQL's sequence).
STEPS_ON_A_FRESH_DATABASE = [
    "401 GET /users",
    "200 GET /users",
    "201 POST /users",
    "200 GET /users/1",
    "304 GET /users/1",
    "201 POST /users/bulk",
    "200 GET /users?limit=2",
    "200 GET /users?limit=2&cursor=<next_cursor>",
    "200 GET /users?username=ADA",
    "200 GET /users?email=Ada@Example.com",
    "200 PATCH /users/1",
    "412 PATCH /users/1",
    "201 POST /users",
    "201 POST /users",
    "422 POST /users",
    "409 POST /users",
    "201 POST /groups",
    "200 GET /groups/1",
    "304 GET /groups/1",
    "200 GET /groups?name=OPS",
    "200 PATCH /groups/1",
    "201 PUT /groups/1/members/1",
    "200 PUT /groups/1/members/1",
    "201 PUT /groups/1/members/2",
    "409 PUT /groups/1/members/3",
    "200 GET /groups/1/members?limit=50",
    "200 GET /users/2/groups?limit=50",
    "204 DELETE /groups/1/members/2",
    "404 DELETE /groups/1/members/2",
    "200 GET /changes?after=0&limit=2",
    "200 GET /changes?after=2&limit=2",
    "204 DELETE /users/1",
    "204 DELETE /groups/1",
    "204 DELETE /users/2",
    "204 DELETE /users/3",
    "204 DELETE /users/4",
    "404 GET /users/1",
    "200 GET /health",
    "200 GET /health/ready",
]


@pytest.fixture
def fresh_server(empty_database, tmp_path):
    """The real server over a database just migrated, with no rows, and a token for the tour."""
    migrate(empty_database.url, "upgrade", "head")
    token = new_token(empty_database.url, "tour", ["read", "write"])
    with running_server(tmp_path, empty_database.url, token=token) as server:
        yield server


def run_tour(server, tour=TOUR):
    """``bash docs/tour.sh`` as the README says, against ``server``; python3 is this venv's."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(tour)],
        env={**os.environ, "PATH": path, "BASE": server.base_url, "TOKEN": server.token},
        capture_output=True,
        text=True,
        timeout=TOUR_TIMEOUT,
    )


def steps(output):
    """The "STATUS METHOD PATH" lines of the tour's output (bodies are indented), with the
    cursor, which differs on every run, replaced by a placeholder."""
    lines = [line for line in output.splitlines() if not line.startswith(" ")]
    return [re.sub(r"cursor=[^&\s]+", "cursor=<next_cursor>", line) for line in lines]


def rows_left(url):
    with short_lived_engine(url) as engine, engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("users", "groups", "memberships")
        }


def test_the_tour_runs_top_to_bottom_on_a_fresh_database(fresh_server):
    result = run_tour(fresh_server)

    assert result.returncode == 0, result.stdout + result.stderr
    assert steps(result.stdout) == [*STEPS_ON_A_FRESH_DATABASE, LAST_LINE]
    assert result.stderr == ""


def test_the_tour_deletes_what_it_created_and_runs_again(fresh_server, empty_database):
    assert run_tour(fresh_server).returncode == 0

    assert rows_left(empty_database.url) == {"users": 0, "groups": 0, "memberships": 0}
    again = run_tour(fresh_server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert steps(again.stdout)[-1] == LAST_LINE


def test_the_tour_stops_at_the_first_step_that_answers_otherwise(fresh_server, tmp_path):
    """The script's own check: a step expecting another status ends the run with exit 1."""
    wrong = TOUR.read_text(encoding="utf-8").replace(
        'call 304 GET "/users/$ada" -H \'If-None-Match: "1"\'',
        'call 304 GET "/users/$ada" -H \'If-None-Match: "2"\'',
    )
    assert wrong != TOUR.read_text(encoding="utf-8")
    (tmp_path / "tour.sh").write_text(wrong, encoding="utf-8")

    result = run_tour(fresh_server, tmp_path / "tour.sh")

    assert result.returncode == 1
    assert steps(result.stdout)[-1] == "200 GET /users/1"
    assert "tour.sh: GET /users/1 answered 200, expected 304" in result.stderr


def test_every_line_of_the_readme_tour_is_a_line_of_the_script():
    """The README shows steps of docs/tour.sh (between its tour markers): each must be there."""
    readme = README.read_text(encoding="utf-8")
    shown = readme.split("<!-- tour:start -->")[1].split("<!-- tour:end -->")[0]
    shown_lines = [line.strip() for line in shown.splitlines()]
    shown_lines = [line for line in shown_lines if line and not line.startswith("```")]
    script_lines = {line.strip() for line in TOUR.read_text(encoding="utf-8").splitlines()}

    assert len(shown_lines) >= 10
    assert [line for line in shown_lines if line not in script_lines] == []
