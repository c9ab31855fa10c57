"""The fixtures: the real app from ``main()``, over a database migrated by the real ``alembic
upgrade head``. Helpers live in ``tests/support``; only fixtures live here, at the root, so
that the tests of the benchmark's own code beside it (``bench/test_*.py``) have them too.

The suite runs on a fresh SQLite file by default and on ``TEST_DATABASE_URL`` when it is set
(whose tables it drops and re-creates). Per-test isolation: each test's requests run inside one
outer transaction on one connection, rolled back at the end (``tests.support.app.rolled_back``),
so every request still runs the real pyramid_tm commit/abort path and sees what earlier
requests of the same test committed.
"""

import os
import secrets

import pytest
import webtest
from pyramid.paster import get_appsettings
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

import myservice
from myservice.data.engine import database_url
from myservice.edge.requestid import LogFormatter
from tests.support.app import app_with_views, collected_log, rolled_back, with_token
from tests.support.database import (
    Database,
    delete_all_rows,
    drop_everything,
    migrate,
    new_token,
    short_lived_engine,
)
from tests.support.feed import feed_head
from tests.support.paths import DEVELOPMENT_INI
from tests.support.servers import running_server
from tests.support.views import TEST_VIEWS

# The app must see only the database and secrets that the tests give it.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("MYSERVICE_SECRET", None)
os.environ.pop("MYSERVICE_PREVIOUS_SECRETS", None)


@pytest.fixture(scope="session")
def db_url(tmp_path_factory):
    """The URL of a database at ``alembic upgrade head`` with no rows."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        url = database_url({"sqlalchemy.url": url}).render_as_string(hide_password=False)
        drop_everything(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    migrate(url, "upgrade", "head")
    return url


@pytest.fixture(scope="session")
def token(db_url):
    """The secret of a token with the scopes ``read`` and ``write``: every API test's token."""
    return new_token(db_url, "tests", ["read", "write"])


@pytest.fixture(scope="session")
def is_postgres(db_url):
    return db_url.startswith("postgresql")


@pytest.fixture(scope="session")
def postgres_only(is_postgres):
    """Skips the tests that use it on SQLite: what they prove is PostgreSQL's (its timeouts,
    locks across processes, serialization failures, connections a proxy can cut). CI runs them;
    locally, set ``TEST_DATABASE_URL``."""
    if not is_postgres:
        pytest.skip("PostgreSQL only (CI runs it): set TEST_DATABASE_URL to run it here")


@pytest.fixture
def empty_database(db_url, is_postgres, tmp_path):
    """A new database with nothing in it, not even tables: a SQLite file, or a new schema of the
    PostgreSQL test database that the URL selects with libpq's ``search_path`` option. Dropped
    afterwards; the session's ``db_url`` database, which other tests use, is never touched."""
    if not is_postgres:
        yield Database(f"sqlite:///{tmp_path / 'empty.sqlite'}", schema=None)
        return
    schema = f"empty_{secrets.token_hex(6)}"
    url = make_url(db_url).update_query_dict({"options": f"-csearch_path={schema}"})
    with short_lived_engine(db_url) as admin:
        try:
            with admin.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            yield Database(url.render_as_string(hide_password=False), schema=schema)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture(scope="session")
def app_settings(db_url):
    settings = dict(get_appsettings(str(DEVELOPMENT_INI), name="main"))
    settings["sqlalchemy.url"] = db_url
    return settings


@pytest.fixture(scope="session")
def app(app_settings):
    """The WSGI app exactly as ``pserve development.ini`` builds it."""
    return myservice.main({}, **app_settings)


@pytest.fixture
def testapp(app, token):
    """The app over one connection whose outer transaction is rolled back after the test; its
    requests carry ``token`` (a test that means to send none sends ``Authorization`` itself,
    or uses ``anonymous``)."""
    with rolled_back(app):
        yield with_token(app, token)


@pytest.fixture
def anonymous(testapp):
    """The test's app (``testapp``), its requests without any ``Authorization`` header."""
    return webtest.TestApp(testapp.app)


@pytest.fixture
def empty_tables(db_url):
    """For tests whose requests really commit: delete every row they left behind."""
    yield
    delete_all_rows(db_url)


@pytest.fixture(scope="module")
def server(db_url, token, tmp_path_factory):
    """The real service (``pserve``) on the session's database, for one test module; every row
    it committed is deleted afterwards."""
    try:
        with running_server(tmp_path_factory.mktemp("server"), db_url, token=token) as running:
            yield running
    finally:
        delete_all_rows(db_url)


@pytest.fixture
def log_lines():
    """A function: the lines myservice has logged during the test so far, in the ini files'
    plain format."""
    with collected_log(
        LogFormatter("[%(request_id)s] %(levelname)s [%(name)s] %(message)s")
    ) as logged:
        yield logged


@pytest.fixture
def executed_sql(app):
    """The (statement, parameters) the app sends to the database while the test runs, but for
    the authentication's (its look-up of the token)."""
    executed = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(conn, cursor, statement, parameters, context, executemany):
        if "api_tokens" not in statement:
            executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    yield executed
    event.remove(engine, "before_cursor_execute", record)


@pytest.fixture(scope="module")
def views_app(app_settings):
    """The service plus ``tests.support.views.TEST_VIEWS`` (a conflict replayed once, a conflict
    on every attempt, a view that logs), over the session's database: nothing there writes."""
    return app_with_views(app_settings, TEST_VIEWS)


@pytest.fixture
def views_client(views_app, token):
    return with_token(views_app, token)


@pytest.fixture
def feed_start(testapp):
    """The seq of the change feed's last change before the test (tests that really commit may
    have left some)."""
    return feed_head(testapp)
