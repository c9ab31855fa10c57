"""``make bench``'s app without authentication (bench/auth.py) runs without it, and only that.

The benchmark states what authentication costs by serving GET one user from the shipped app and
from this one: the figure means something only if the second server, loaded from the same ini
file as the bench loads it, answers every view with no token and is otherwise the same app.
"""

import pytest
import webtest
from pyramid.paster import get_app

from bench.auth import COMPARISON
from tests.support.app import with_token
from tests.support.paths import DEVELOPMENT_INI
from tests.support.processes import free_port, write_ini

NOT_A_TOKEN = {"Authorization": "Bearer not-a-token"}


@pytest.fixture
def noauth(tmp_path, db_url, monkeypatch):
    """The comparison app as its server loads it: the ini file with ``[app:main]`` edited as
    ``make bench`` edits production.ini, on the suite's database."""
    ini = write_ini(DEVELOPMENT_INI, tmp_path, free_port(), edit=COMPARISON.edit)
    monkeypatch.setenv("DATABASE_URL", db_url)
    app = get_app(str(ini), "main")
    try:
        yield webtest.TestApp(app)
    finally:
        app.registry["dbsession_factory"].kw["bind"].dispose()


def test_the_comparison_app_reads_and_writes_without_a_token(noauth, app, token, empty_tables):
    shipped = webtest.TestApp(app)
    shipped.get("/users?limit=1", status=401)
    shipped.delete("/users/999999999", status=401)

    body = {"username": "noauth", "email": "noauth@example.org"}
    user = noauth.post_json("/users", body, status=201).json  # a write, with no token
    path = f"/users/{user['id']}"
    assert noauth.get(path, status=200).json == user  # what the benchmark reads
    assert noauth.get(path, headers=NOT_A_TOKEN, status=200).json == user  # never looked at
    assert noauth.get("/users", {"username": "noauth"}, status=200).json["items"] == [user]
    # the same database and views as the shipped app, which reads it with a token
    assert with_token(app, token).get(path, status=200).json == user
    assert noauth.delete("/users/999999999", status=404).json["status"] == 404
    assert noauth.get("/health", status=200).json == {"status": "ok"}
