"""The database session: one engine per process, one session per request.

- The engine and the ``sessionmaker`` are built once, at startup; the factory is kept in
  ``config.registry["dbsession_factory"]`` (tests rebind it to a connection they control).
- ``request.dbsession`` is a reified request method: the first access in a request creates the
  session and joins it to the request's transaction manager (``request.tm``); a request that
  never touches it opens no session and checks out no connection.
- pyramid_tm owns the transaction: it commits when the view returns a 2xx/3xx and aborts on an
  exception or a 4xx/5xx response; either way zope.sqlalchemy closes the session, which returns
  its connection to the pool. pyramid_retry replays the request on transient conflicts.
"""

import os

import zope.sqlalchemy
from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool
from sqlalchemy import engine_from_config, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

#: Methods that may write. On SQLite their transaction takes the write lock at BEGIN.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Seconds a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000

#: libpq options: how long to wait for a PostgreSQL server to accept a connection (s), and
#: how long sent data may go unacknowledged (ms) before a connection to a dead host is dropped
#: (keepalives find one that dies while idle). A server that is alive but frozen is not
#: covered: its requests wait for it.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 3,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def database_url(settings):
    """``DATABASE_URL`` from the environment, else ``sqlalchemy.url``; postgres means psycopg 3."""
    url = os.environ.get("DATABASE_URL") or settings.get("sqlalchemy.url")
    if not url:
        raise ConfigurationError("no database: set DATABASE_URL or sqlalchemy.url")
    url = make_url(url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(settings):
    """The process's engine, from the ``sqlalchemy.`` settings (pool size, pre-ping, ...)."""
    url = database_url(settings)
    options = {}
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = POSTGRES_CONNECT_ARGS
    if "sqlalchemy.pool_pre_ping" in settings:  # engine_from_config leaves "false" a string
        options["pool_pre_ping"] = asbool(settings["sqlalchemy.pool_pre_ping"])
    engine = engine_from_config(
        {**settings, "sqlalchemy.url": url}, prefix="sqlalchemy.", **options
    )
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    return engine


def configure_sqlite(engine):
    """Make SQLite transactional the way PostgreSQL is.

    pysqlite's legacy mode sends no BEGIN before a SELECT, so a read-modify-write runs its read
    outside the transaction and loses updates. We turn that off and send BEGIN ourselves.
    A writing request sends BEGIN IMMEDIATE: it takes the write lock up front (waiting up to the
    busy timeout), because a deferred transaction that reads and then writes fails at once with
    "database is locked" when another writer got there first, busy timeout or not.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None  # pysqlite: never BEGIN behind our back
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        writes = connection.get_execution_options().get("sqlite_write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    @event.listens_for(engine, "checkin")
    def on_checkin(dbapi_connection, connection_record):
        # A COMMIT that SQLite refuses (a deferred foreign key) leaves its transaction open,
        # and SQLAlchemy, having sent the COMMIT, skips the pool's rollback-on-return: the next
        # request would inherit the transaction and its write lock. Never pool one mid-transaction.
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()


def dbsession(request):
    """This request's session, joined to ``request.tm`` (pyramid_tm commits or aborts it)."""
    session = request.registry["dbsession_factory"]()
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    if request.method in WRITE_METHODS:
        # Begin now, flagged as a writer: SQLite takes its write lock at BEGIN (see
        # configure_sqlite); other databases ignore the option.
        session.connection(execution_options={"sqlite_write_lock": True})
    return session


def includeme(config):
    settings = config.get_settings()
    # The transaction policy is part of the design, not a deployment choice.
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    settings["tm.commit_veto"] = "pyramid_tm.default_commit_veto"  # a 4xx/5xx response aborts
    settings["tm.annotate_user"] = False  # it would call the security policy inside the tween
    settings["retry.attempts"] = int(settings.get("retry.attempts", 3))
    settings.setdefault("retry.activate_hook", "myservice.validation.retry_attempts")
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = make_engine(settings)
    config.registry["dbsession_factory"] = sessionmaker(bind=engine)
    config.add_request_method(dbsession, reify=True)
