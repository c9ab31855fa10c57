"""The database session: one engine per process, one session per request (or per script).

- The engine and the ``sessionmaker`` are built once, at startup; the factory is kept in
  ``config.registry["dbsession_factory"]`` (tests rebind it to a connection they control).
- ``request.dbsession`` is a reified request method: the first access in a request creates the
  session and joins it to the request's transaction manager (``request.tm``); a request that
  never touches it opens no session and checks out no connection.
- pyramid_tm owns the transaction: it commits when the view returns a 2xx/3xx and aborts on an
  exception or a 4xx/5xx response; either way zope.sqlalchemy closes the session, which returns
  its connection to the pool. pyramid_retry replays the request on transient conflicts.
- Code outside a request (the command-line tools, alembic) opens its session with
  ``myservice.data.scripts.session_scope``: the same engine, BEGIN policy and conflict rule,
  one transaction that commits on success and rolls back on an exception, closed and disposed
  at the end.
"""

import functools
import os
import weakref

from pyramid.settings import asbool
from sqlalchemy import engine_from_config, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from zope.sqlalchemy.datamanager import ZopeTransactionEvents

from myservice.data import roundtrips
from myservice.data.errors import BadSettings
from myservice.data.replicas import READ_METHODS, replicas_from_settings
from myservice.data.timeouts import POSTGRES_CONNECT_ARGS, set_local

#: Methods that may write: they run in a transaction (on SQLite, one that holds the write lock).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The session events ``zope.sqlalchemy.register`` listens to (see ``RequestSession``).
ZOPE_EVENTS = (
    "after_begin",
    "after_attach",
    "after_flush",
    "after_bulk_update",
    "after_bulk_delete",
    "before_commit",
    "do_orm_execute",
)

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
        event.listen(engine, "begin", functools.partial(begin, timeouts=set_local(settings)))
        roundtrips.install(engine)  # a write's COMMIT rides with the feed's statement
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


def begin(connection, write="BEGIN", timeouts=""):
    """Start the transaction the way this connection's request needs it (``access``).

    - ``"read"`` (GET, HEAD): no transaction at all. Each statement is atomic on its own, and a
      reading request sees nothing more consistent inside a READ COMMITTED transaction (every
      statement takes a new snapshot there too), so BEGIN and ROLLBACK would be two round trips
      that buy nothing.
    - ``"write"``: BEGIN, and on SQLite BEGIN IMMEDIATE (``write``), which takes the write lock
      up front (waiting up to the busy timeout): a deferred transaction that reads and then
      writes fails at once with "database is locked" when another writer got there first.
    - anything else (migrations, tests, pshell): a plain BEGIN.

    A request's transaction (execution option ``timeouts``, see ``dbsession``) also gets the
    request timeouts, ``SET LOCAL`` in the same message as its BEGIN (``myservice.data.timeouts``).
    """
    options = connection.get_execution_options()
    access = options.get("access")
    if access == "read":
        return
    statement = write if access == "write" else "BEGIN"
    connection.exec_driver_sql(statement + timeouts if options.get("timeouts") else statement)


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


class RequestSession(Session):
    """A session that joins the transaction manager it is given, as zope.sqlalchemy does.

    ``zope.sqlalchemy.register(session, transaction_manager=request.tm)`` attaches seven event
    listeners to every session it is given, and detaching them again made up about 15% of a
    simple request. Here the listeners are registered once, on this class, and each forwards to
    the ``ZopeTransactionEvents`` (zope.sqlalchemy's own listener object) that the session
    carries for its request's manager: the same behaviour, no per-request registration.
    """

    def __init__(self, *, transaction_manager, **options):
        super().__init__(**options)
        self.info["zope_events"] = ZopeTransactionEvents(transaction_manager=transaction_manager)


def _forward(name):
    def listener(target, *args):
        # ``target`` is the session, or an event context (bulk update, ORM execute) naming it.
        session = target if isinstance(target, Session) else target.session
        getattr(session.info["zope_events"], name)(target, *args)

    return listener


for _name in ZOPE_EVENTS:
    event.listen(RequestSession, _name, _forward(_name))


def mark_changed(session):
    """Tell the request's transaction that ``session`` wrote through Core or ``text()``.

    zope.sqlalchemy sees only ORM writes; without this the transaction is rolled back. A
    session outside a request (the importer's) commits by itself and has no manager to tell.
    """
    events = session.info.get("zope_events")
    if events is not None:
        events.mark_changed(session)


def dbsession(request):
    """This request's session, joined to ``request.tm`` (pyramid_tm commits or aborts it).

    It checks out its connection at once, telling ``begin`` whether this request reads or writes,
    and that the request timeouts apply (``myservice.data.timeouts``).
    """
    access = "write" if request.method in WRITE_METHODS else "read"
    replicas = request.registry.get("replicas")
    if replicas is not None and request.method in READ_METHODS:  # a replica, or the primary
        session = joined_session(request, access, True, replicas.read_engine(request.environ))
        replicas.see_position_at_end(request.tm.get(), session, request.environ)
        return session
    return joined_session(request, access, timeouts=True)


def primary_session(request):
    """The request's session on the primary, for what a read must not take from a replica
    (its token, and noting the token's use: ``edge.security``) or checks the primary itself
    (``/health/ready``): ``request.dbsession`` unless replicas serve reads."""
    if request.registry.get("replicas") is None or request.method in WRITE_METHODS:
        return request.dbsession
    return joined_session(request, "read", timeouts=True)


def joined_session(request, access=None, timeouts=False, bind=None):
    """A new session joined to ``request.tm``'s transaction (begun already), its connection
    checked out with ``access`` for ``begin`` (None: a plain BEGIN) and, with ``timeouts``, the
    request timeouts (pshell's session has none: an operator's query may take its time); on
    ``bind`` (a replica's engine) instead of the factory's own engine when given."""
    options = {"bind": bind} if bind is not None else {}
    session = request.registry["dbsession_factory"](transaction_manager=request.tm, **options)
    session.connection(execution_options={"access": access, "timeouts": timeouts})
    return session


def is_conflict(exc):
    """A conflict with a concurrent transaction that a replay can resolve.

    The same rule zope.sqlalchemy applies while the transaction is still open: SQLSTATE class 40
    (serialization failure, deadlock) and a versioned UPDATE/DELETE that matched no row.
    """
    if isinstance(exc, StaleDataError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and bool(sqlstate) and sqlstate.startswith("40")


def includeme(config):
    settings = config.get_settings()
    # The transaction policy is part of the design, not a deployment choice.
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    settings["tm.commit_veto"] = "pyramid_tm.default_commit_veto"  # a 4xx/5xx response aborts
    settings["tm.annotate_user"] = False  # it would call the security policy inside the tween
    settings["retry.attempts"] = int(settings.get("retry.attempts", 3))
    settings.setdefault("retry.activate_hook", "myservice.edge.jsonbody.retry_attempts")
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = make_engine(settings)
    config.registry["dbsession_factory"] = sessionmaker(bind=engine, class_=RequestSession)
    config.registry["replicas"] = replicas_from_settings(settings, engine, make_engine)
    config.add_request_method(dbsession, reify=True)
    config.add_request_method(primary_session, reify=True)
