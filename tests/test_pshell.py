"""``pshell INI``: the real command, its commands piped to stdin, on the session's database."""

import os
import subprocess

import pytest
from sqlalchemy import select

from myservice.data.models import User
from tests.support.database import short_lived_engine
from tests.support.factories import unique
from tests.support.paths import ROOT
from tests.support.processes import venv_command


def pshell(ini, db_url, *commands):
    """Run ``pshell -p python INI`` with ``commands`` as its input; return what it printed."""
    result = subprocess.run(
        [venv_command("pshell"), "-p", "python", str(ROOT / ini)],
        input="\n".join(commands) + "\n",
        env={**os.environ, "DATABASE_URL": db_url, "MYSERVICE_SECRET": "s" * 48},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def stored(db_url, username):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        query = select(User.id, User.version).where(User.username == username)
        return connection.execute(query).all()


CREATE = (
    "user = models.User(username=NAME, email=NAME + '@example.org')",
    "dbsession.add(user)",
    "dbsession.flush()",
    "user_id = user.id",
    "print('created', user_id, request.dbsession is dbsession)",
)


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_pshell_commits_what_tm_commit_stores_and_reads_it_back(ini, db_url, empty_tables):
    name = unique("shell")

    output = pshell(
        ini,
        db_url,
        f"NAME = {name!r}",
        *CREATE,
        "tm.commit()",
        "tm.begin()",
        "from sqlalchemy import select",
        "query = select(models.User.username).where(models.User.id == user_id)",
        "print('found', dbsession.scalars(query).one())",
    )

    ((user_id, version),) = stored(db_url, name)
    assert f"created {user_id} True" in output
    assert f"found {name}" in output
    assert version == 1


def test_leaving_pshell_aborts_what_was_not_committed(db_url, empty_tables):
    name = unique("shell")

    output = pshell("development.ini", db_url, f"NAME = {name!r}", *CREATE)

    assert "created " in output  # it was written, in the shell's transaction
    assert stored(db_url, name) == []
