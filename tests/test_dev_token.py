"""``make run``'s development token: made once, kept while the database accepts it, made again
when it does not (the database was reset, the token revoked). The real Makefile target
(``make dev-token``, which ``make run`` runs before serving) on a SQLite file of its own; the
venv and the migration, its other prerequisites, are made already (``-o migrate``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import myservice
from tests.support.app import with_token
from tests.support.database import migrate, short_lived_engine
from tests.support.paths import ROOT

#: The virtualenv running the tests: the Makefile's ``VENV``.
VENV = Path(sys.executable).parent.parent


@pytest.fixture
def database(tmp_path, app_settings):
    """A migrated SQLite file, and the app on it (as ``pserve development.ini`` serves it)."""
    url = f"sqlite:///{tmp_path / 'development.sqlite'}"
    migrate(url, "upgrade", "head")
    app = myservice.main({}, **{**app_settings, "sqlalchemy.url": url})
    yield url, app
    app.registry["dbsession_factory"].kw["bind"].dispose()


def make_dev_token(url, token_file):
    result = subprocess.run(
        ["make", "-o", "migrate", "dev-token", f"VENV={VENV}", f"DEV_TOKEN={token_file}"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return token_file.read_text().strip()


def accepted(app, secret):
    return with_token(app, secret).get("/users", expect_errors=True).status_int == 200


def test_the_token_is_made_once_and_kept_while_the_database_accepts_it(database, tmp_path):
    url, app = database
    token_file = tmp_path / "dev-token"

    secret = make_dev_token(url, token_file)
    again = make_dev_token(url, token_file)

    assert accepted(app, secret)
    assert again == secret


def test_a_reset_database_gets_a_new_token(database, tmp_path):
    url, app = database
    token_file = tmp_path / "dev-token"
    old = make_dev_token(url, token_file)
    migrate(url, "downgrade", "base")  # what deleting the SQLite file and migrating again does
    migrate(url, "upgrade", "head")
    assert not accepted(app, old)

    new = make_dev_token(url, token_file)

    assert new != old
    assert accepted(app, new)


def test_a_revoked_token_is_replaced(database, tmp_path):
    url, app = database
    token_file = tmp_path / "dev-token"
    old = make_dev_token(url, token_file)
    with short_lived_engine(url) as engine, engine.begin() as connection:
        connection.exec_driver_sql("UPDATE api_tokens SET revoked = 1")

    new = make_dev_token(url, token_file)

    assert new != old
    assert accepted(app, new) and not accepted(app, old)
