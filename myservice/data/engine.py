"""The engine: one per process (and one per replica), built from the settings at startup.

- ``database_url``: ``DATABASE_URL``, else the ini's ``sqlalchemy.url``.
- ``make_engine``: the driver in autocommit, so that ``begin`` decides how each connection's
  transaction starts (none for a read, ``BEGIN IMMEDIATE`` for a SQLite write); PostgreSQL
  sessions in UTC, directly or behind PgBouncer; SQLite made to behave like PostgreSQL
  (``configure_sqlite``); an empty pool in a forked child (``empty_pool_after_fork``).

The session built on it, per request, is ``myservice.data.db``'s.
"""

import functools
import os
import weakref

import orjson
from pyramid.settings import asbool
from sqlalchemy import engine_from_config, event
from sqlalchemy.engine import make_url

from myservice.data.errors import BadSettings
from myservice.data.roundtrips import carry_begin, forget_begin
from myservice.data.timeouts import POSTGRES_CONNECT_ARGS, set_local

#: Seconds a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000

#: The setting that puts PgBouncer (transaction pooling) between the service and PostgreSQL.
PGBOUNCER = "myservice.pgbouncer"


def database_url(settings):
    """``DATABASE_URL`` from the environment, else ``sqlalchemy.url``; postgres means psycopg 3."""
    url = os.environ.get("DATABASE_URL") or settings.get("sqlalchemy.url")
    if not url:
        raise BadSettings(
            "no database: set DATABASE_URL (postgresql://user:password@host/name) or the ini"
            " file's sqlalchemy.url"
        )
    url = make_url(url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(settings, url=None):
    """The process's engine, from the ``sqlalchemy.`` settings (pool size, pre-ping, ...), for
    ``url`` (a replica's) or else the primary's (``database_url``).

    The driver never begins a transaction by itself (``AUTOCOMMIT``): our ``begin`` listener
    does, so that a reading request costs no BEGIN and no ROLLBACK (see ``begin``).
    """
    url = url or database_url(settings)
    options = {"isolation_level": "AUTOCOMMIT"}
    pgbouncer = url.get_backend_name() == "postgresql" and behind_pgbouncer(settings)
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = postgres_connect_args(url, pgbouncer)
        options["json_serializer"] = orjson.dumps  # psycopg takes its bytes (SQLite would not)
    if "sqlalchemy.pool_pre_ping" in settings:  # engine_from_config leaves "false" a string
        options["pool_pre_ping"] = asbool(settings["sqlalchemy.pool_pre_ping"])
    # An error's message (and so its log line) shows its statement, never the values bound to
    # it: those are emails and names. ``sqlalchemy.hide_parameters = false`` shows them.
    options["hide_parameters"] = asbool(settings.get("sqlalchemy.hide_parameters", True))
    engine = engine_from_config(
        {**settings, "sqlalchemy.url": url}, prefix="sqlalchemy.", **options
    )
    if pgbouncer:  # first, before SQLAlchemy's own first queries
        event.listen(engine, "connect", set_time_zone_utc, insert=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "begin", functools.partial(begin, write="BEGIN IMMEDIATE"))
        configure_sqlite(engine)
    else:
        on_begin = functools.partial(begin, timeouts=set_local(settings), carry=carry_begin)
        event.listen(engine, "begin", on_begin)
        event.listen(engine, "checkin", forget_begin)
    empty_pool_after_fork(engine)
    return engine


def empty_pool_after_fork(engine):
    """Give a forked child process an empty pool, and leave the parent's connections alone.

    A pre-forking server that builds the app before it forks (gunicorn's ``preload_app``) would
    otherwise hand one pooled connection to several processes, whose messages would interleave
    on one database session. ``dispose(close=False)`` only drops the child's references (psycopg
    does not close a connection in a process other than the one that opened it), so the parent
    keeps its connections and each child opens its own.
    """
    engine_ref = weakref.ref(engine)  # the hook must not keep an engine alive

    def in_child():
        forked = engine_ref()
        if forked is not None:
            forked.dispose(close=False)

    os.register_at_fork(after_in_child=in_child)


def postgres_connect_args(url, pgbouncer):
    """psycopg's arguments: ``POSTGRES_CONNECT_ARGS``, and sessions in UTC.

    Timestamps must arrive as UTC whatever the server's zone (models.meta.UTCDateTime relies on
    it). Directly, ``-c TimeZone=UTC`` rides in libpq's startup ``options``, merged with any the
    URL names (a search_path, say). PgBouncer refuses ``options``, so behind it the zone is set
    by ``set_time_zone_utc`` instead, and psycopg prepares no statements: one prepared on one
    server connection is unknown on the next.
    """
    if not pgbouncer:
        libpq_options = " ".join(filter(None, (url.query.get("options"), "-c TimeZone=UTC")))
        return {**POSTGRES_CONNECT_ARGS, "options": libpq_options}
    if "options" in url.query:
        raise BadSettings(
            f"{PGBOUNCER} = true: PgBouncer does not pass libpq 'options' on to PostgreSQL;"
            " set them on the role or database instead (ALTER ROLE ... SET ...)"
        )
    return {**POSTGRES_CONNECT_ARGS, "prepare_threshold": None}


def behind_pgbouncer(settings):
    """Whether ``myservice.pgbouncer`` says the database URL names a PgBouncer in transaction
    pooling mode: consecutive transactions (and, outside one, statements) of one connection may
    then run on different server connections, so nothing may rely on session state. Off, the
    service talks to PostgreSQL directly; on, it works either way (see ``make_engine``)."""
    return asbool(settings.get(PGBOUNCER, False))


def set_time_zone_utc(dbapi_connection, connection_record):
    """``SET TimeZone`` once per new connection, for PgBouncer, which refuses libpq ``options``.

    A session SET does not stick in transaction pooling, but PgBouncer tracks this parameter (and
    client_encoding, DateStyle...) per client and applies it to each server connection it lends.
    """
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    dbapi_connection.execute("SET TimeZone TO 'UTC'")
    dbapi_connection.autocommit = autocommit


def begin(connection, write="BEGIN", timeouts="", carry=None):
    """Start the transaction the way this connection's request needs it (``access``).

    - ``"read"`` (GET, HEAD): no transaction at all. Each statement is atomic on its own, and a
      reading request sees nothing more consistent inside a READ COMMITTED transaction (every
      statement takes a new snapshot there too), so BEGIN and ROLLBACK would be two round trips
      that buy nothing.
    - ``"write"``: BEGIN, and on SQLite BEGIN IMMEDIATE (``write``), which takes the write lock
      up front (waiting up to the busy timeout): a deferred transaction that reads and then
      writes fails at once with "database is locked" when another writer got there first. On
      PostgreSQL it is not sent here but by ``carry`` (``roundtrips.carry_begin``): in the
      message of the transaction's first statement.
    - anything else (migrations, tests, pshell): a plain BEGIN.

    A request's transaction (execution option ``timeouts``, see ``myservice.data.db.dbsession``)
    also gets the request timeouts, ``SET LOCAL`` in the same message as its BEGIN
    (``myservice.data.timeouts``).
    """
    options = connection.get_execution_options()
    access = options.get("access")
    if access == "read":
        return
    statement = write if access == "write" else "BEGIN"
    statement = statement + timeouts if options.get("timeouts") else statement
    if access == "write" and carry is not None:
        carry(connection, statement)
    else:
        connection.exec_driver_sql(statement)


def configure_sqlite(engine):
    """Make SQLite behave like PostgreSQL: foreign keys, WAL, a busy timeout, no stuck writer.

    pysqlite's legacy mode would send no BEGIN before a SELECT, so a read-modify-write would
    run its read outside the transaction and lose updates; in AUTOCOMMIT mode it sends none at
    all, and ``begin`` sends ours.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.close()

    @event.listens_for(engine, "checkin")
    def on_checkin(dbapi_connection, connection_record):
        # A COMMIT that SQLite refuses (a deferred foreign key) leaves its transaction open,
        # and SQLAlchemy, having sent the COMMIT, skips the pool's rollback-on-return: the next
        # request would inherit the transaction and its write lock. Never pool one mid-transaction.
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()
