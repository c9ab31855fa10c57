"""The real app from ``main()``, over a database migrated by the real ``alembic upgrade head``.

The suite runs on a fresh SQLite file by default and on ``TEST_DATABASE_URL`` when it is set
(whose tables it drops and re-creates). Per-test isolation: each test's requests run inside one
outer transaction on one connection, rolled back at the end; the registry's session factory is
rebound to that connection with ``join_transaction_mode="create_savepoint"``, so every request
still runs the real pyramid_tm commit/abort path (on a SAVEPOINT) and sees what earlier
requests of the same test committed.
"""

import logging
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.paster import get_appsettings
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

import myservice
from myservice.data.db import database_url
from myservice.data.models.token import create_token
from myservice.edge.requestid import LogFormatter

ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_INI = ROOT / "development.ini"

# The app must see only the database and secret that the tests give it.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("MYSERVICE_SECRET", None)


def migrate(url, *args):
    """Run the alembic command line, as docs/deployment.md does, against ``url``."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(DEVELOPMENT_INI), *args],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@contextmanager
def short_lived_engine(url):
    """An engine of its own for a test's direct look at the database, disposed afterwards."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def drop_everything(url):
    with short_lived_engine(url) as engine, engine.begin() as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        metadata.drop_all(connection)


def delete_all_rows(url):
    """Delete every row the tests may commit (in the order the foreign keys allow), and start
    the change feed again at seq 1."""
    with short_lived_engine(url) as engine, engine.begin() as connection:
        for table in ("memberships", "groups", "users", "changes", "idempotency_keys"):
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("UPDATE feed_counter SET seq = 0"))


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


def new_token(url, name, scopes, expires_at=None):
    """Store a token in the database at ``url`` (committed) and return its secret."""
    with short_lived_engine(url) as engine, engine.begin() as connection:
        return create_token(connection, name, scopes, expires_at)


def bearer(secret):
    """The ``Authorization`` header that presents the token ``secret``."""
    return {"Authorization": f"Bearer {secret}"}


def with_token(app, secret):
    """A WebTest client of ``app`` whose requests carry the token ``secret``."""
    return webtest.TestApp(
        app, extra_environ={"HTTP_AUTHORIZATION": bearer(secret)["Authorization"]}
    )


@pytest.fixture(scope="session")
def token(db_url):
    """The secret of a token with the scopes ``read`` and ``write``: every API test's token."""
    return new_token(db_url, "tests", ["read", "write"])


@pytest.fixture(scope="session")
def is_postgres(db_url):
    return db_url.startswith("postgresql")


@dataclass
class Database:
    url: str
    schema: str | None  # the PostgreSQL schema the URL selects; None on SQLite

    @property
    def is_sqlite(self):
        return self.schema is None


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


def app_with_views(settings, views):
    """The service as ``main()`` builds it, plus ``views``: {path: view} that only tests need."""
    with Configurator(settings=dict(settings)) as config:
        config.include(myservice.includeme)
        for path, view in views.items():
            config.add_route(path, path)
            config.add_view(view, route_name=path, renderer="json")
    return config.make_wsgi_app()


@contextmanager
def rolled_back(app):
    """Until the block ends, the app's requests run over one connection whose outer
    transaction is then rolled back (see the module docstring)."""
    registry = app.registry
    factory = registry["dbsession_factory"]
    connection = factory.kw["bind"].connect()
    outer = connection.begin()
    registry["dbsession_factory"] = sessionmaker(
        bind=connection, class_=factory.class_, join_transaction_mode="create_savepoint"
    )
    try:
        yield
    finally:
        registry["dbsession_factory"] = factory
        outer.rollback()
        connection.close()


@pytest.fixture
def testapp(app, token):
    """The app over one connection whose outer transaction is rolled back after the test; its
    requests carry ``token`` (a test that means to send none sends ``Authorization`` itself,
    or uses ``anonymous``)."""
    with rolled_back(app):
        yield with_token(app, token)


@pytest.fixture
def empty_tables(db_url):
    """For tests whose requests really commit: delete every row they left behind."""
    yield
    delete_all_rows(db_url)


@pytest.fixture(scope="module")
def server(db_url, token, tmp_path_factory):
    """The real service (``pserve``) on the session's database, for one test module; every row
    it committed is deleted afterwards."""
    from tests.realserver import running_server  # it imports this module

    try:
        with running_server(tmp_path_factory.mktemp("server"), db_url, token=token) as running:
            yield running
    finally:
        delete_all_rows(db_url)


@contextmanager
def collected_log(formatter):
    """The lines myservice logs in the block, formatted by ``formatter`` as they are written
    (so with the id of the request being served)."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(formatter)
    logger = logging.getLogger("myservice")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def log_lines():
    """Lines logged by myservice during the test, in the ini files' plain format."""
    with collected_log(
        LogFormatter("[%(request_id)s] %(levelname)s [%(name)s] %(message)s")
    ) as lines:
        yield lines
