"""What bounds a request's wait for PostgreSQL, whatever state the server is in.

- **Connecting**: libpq's ``connect_timeout`` (``POSTGRES_CONNECT_ARGS``). After
  an attempt timed out (or the watchdog below cut a statement), ``ConnectGate`` refuses new
  connections at once for ``RECONNECT_PAUSE``, then lets one request try again: under load,
  requests would otherwise queue behind each other's timeouts, far beyond any bound.
- **A pooled connection**: ``sqlalchemy.pool_timeout``; the pool ran dry, 503.
- **A write's statements**: the server cancels them, ``statement_timeout`` and ``lock_timeout``,
  and ends a transaction left idle (a client process that froze holding row locks),
  ``idle_in_transaction_session_timeout``. They are set locally to the transaction, in one
  statement in the same message as the write's ``BEGIN`` (``set_local``): no extra round
  trip, and they hold through
  PgBouncer's transaction pooling, which passes on neither startup ``options`` nor a session's
  ``SET``. Reads run without a transaction, so the server bounds them only if the operator gives
  the role a default (``ALTER ROLE ... SET statement_timeout``).
- **Any statement, COMMIT and ROLLBACK, when the server cannot answer** (frozen, unreachable):
  nothing on the server side helps, and psycopg has no client-side timeout. ``Watchdog`` is
  one thread per process that shuts down the socket of a request's statement still unanswered
  ``statement_timeout`` + ``GRACE`` after it was sent; psycopg then fails at once, the
  connection is discarded, and the request ends in ``DatabaseTimeout`` (503, not replayed: a
  replay would wait again). ``/health/ready`` asks for a shorter bound
  (``execution_options(client_timeout=...)``).

Only the service's requests are bounded (connections with the execution option ``timeouts``,
see ``myservice.data.db.dbsession``): migrations, the importer and the purge may run long.
"""

import os
import socket
import threading
import time

import psycopg
from psycopg.errors import ConnectionTimeout
from psycopg.pq import TransactionStatus
from sqlalchemy import event

#: libpq options: how long to wait for a PostgreSQL server to accept a connection (s; psycopg
#: waits whole seconds, 2 at the least), and how long sent data may go unacknowledged (ms)
#: before a connection to a dead host is dropped (keepalives find one that dies while idle).
#: A server that is alive but frozen still acknowledges: ``myservice.data.timeouts`` bounds that.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 2,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

#: setting -> (PostgreSQL parameter, default in ms). 0 sends nothing: the server's (or the
#: role's) default applies.
SETTINGS = {
    "myservice.statement_timeout_ms": ("statement_timeout", 1000),
    "myservice.lock_timeout_ms": ("lock_timeout", 500),
    "myservice.idle_in_transaction_timeout_ms": ("idle_in_transaction_session_timeout", 5000),
}

#: Seconds the watchdog adds to ``statement_timeout``: the server's own cancellation, when it
#: can send one, arrives first.
GRACE = 0.5

#: Seconds between the watchdog's looks at the deadlines: how late it may cut.
TICK = 0.1

#: Seconds new connections are refused at once after an attempt timed out, or after the
#: watchdog cut a statement.
RECONNECT_PAUSE = 1.0


class DatabaseTimeout(Exception):
    """The database did not answer a statement in time; its connection was cut."""


class DatabaseAway(psycopg.OperationalError):
    """Not tried: an attempt to connect timed out less than ``RECONNECT_PAUSE`` ago."""


def timeouts_ms(settings):
    """{PostgreSQL parameter: ms} from the settings (each an int >= 0)."""
    values = {}
    for setting, (parameter, default) in SETTINGS.items():
        value = int(settings.get(setting, default))
        if value < 0:
            raise ValueError(f"{setting} must be 0 (not set) or more milliseconds, not {value}")
        values[parameter] = value
    return values


def set_local(settings):
    """What follows a request's BEGIN on PostgreSQL: each timeout set, ``SET LOCAL`` as one
    statement (``set_config(..., true)`` is ``SET LOCAL``): the driver reads one result for
    it, not one per timeout."""
    calls = [
        f"set_config('{parameter}', '{ms}', true)"
        for parameter, ms in timeouts_ms(settings).items()
        if ms
    ]
    return f"; SELECT {', '.join(calls)}" if calls else ""


class Watchdog:
    """Cuts the connection of a statement that has had no answer by its deadline.

    Workers ``arm`` a psycopg connection as they send a statement (a later one moves its
    deadline); every ``TICK`` the watchdog's thread forgets the deadlines that have passed and
    shuts down the socket of each of those connections that is still waiting for an answer.
    An answered statement needs no disarming (its connection is no longer waiting), which
    spares every statement a second event; a connection is disarmed when it goes back to the
    pool or is discarded, before SQLAlchemy can close it, and all of it happens under one lock,
    so the socket shut down is always the waiting statement's own. One per process
    (``WATCHDOG``), whatever the number of engines; its thread starts with the first statement,
    so after any fork.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.deadlines = {}  # psycopg connection -> time.monotonic() deadline
        self.cut = set()  # connections cut, until their worker learns it (``disarm``)
        self.thread = None

    def arm(self, connection, seconds):
        deadline = time.monotonic() + seconds
        with self.lock:
            self.deadlines[connection] = deadline
            if self.thread is None:
                self.thread = threading.Thread(target=self.watch, name="db-watchdog", daemon=True)
                self.thread.start()

    def disarm(self, connection):
        """Stop watching ``connection``; True when the watchdog had cut it."""
        with self.lock:
            self.deadlines.pop(connection, None)
            if connection in self.cut:
                self.cut.discard(connection)
                return True
        return False

    def watch(self):
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self.lock:
                for connection, deadline in list(self.deadlines.items()):
                    if deadline <= now:
                        del self.deadlines[connection]
                        if shut_down(connection):
                            self.cut.add(connection)


WATCHDOG = Watchdog()
# A forked child has no watchdog thread, and its lock may have been held by one: start afresh.
os.register_at_fork(after_in_child=WATCHDOG.__init__)


def shut_down(connection):
    """Shut down the socket of a psycopg connection that is waiting for the server.

    A connection not waiting (its statement was answered, it was closed) is left alone.
    """
    try:
        if connection.pgconn.transaction_status != TransactionStatus.ACTIVE:
            return False
        with socket.socket(fileno=os.dup(connection.pgconn.socket)) as cut:
            cut.shutdown(socket.SHUT_RDWR)
    except Exception:  # closed meanwhile: nothing is waiting on it any more
        return False
    return True


class ConnectGate:
    """After a connection attempt timed out, refuse new ones for ``RECONNECT_PAUSE``, then let
    one through (the others are refused while it tries, up to ``probe_seconds``). A refused
    connection (the server is down) costs nothing to try, so only timeouts close the gate;
    pooled connections are not concerned."""

    def __init__(self, probe_seconds):
        self.probe_seconds = probe_seconds
        self.failing = False
        self.closed_until = 0.0

    def install(self, engine):
        event.listen(engine, "do_connect", self.before_connect)
        event.listen(engine, "connect", self.connected)
        event.listen(engine, "handle_error", self.on_error)

    def before_connect(self, dialect, connection_record, cargs, cparams):
        if self.failing:
            now = time.monotonic()
            if now < self.closed_until:
                raise DatabaseAway("the last attempt to connect timed out: not tried again yet")
            self.closed_until = now + self.probe_seconds  # this one tries, the others wait

    def connected(self, dbapi_connection, connection_record):
        self.failing = False

    def on_error(self, context):
        if context.connection is None and isinstance(context.original_exception, ConnectionTimeout):
            self.close()

    def close(self):
        """The database did not answer in time: stop connecting to it for a while."""
        self.failing = True
        self.closed_until = time.monotonic() + RECONNECT_PAUSE


def watch(engine, seconds, gate):
    """Arm the watchdog for every statement, COMMIT and ROLLBACK of a request's connection
    (``seconds``, or a statement's ``client_timeout`` execution option). A cut connection is
    discarded, the others are kept (a slow statement says nothing about them), and ``gate``
    is closed: a server that does not answer will not accept a connection either."""

    def dbapi_connection(connection):
        # An invalidated connection has none (and asking for it would try to reconnect).
        if connection.invalidated or not connection.get_execution_options().get("timeouts"):
            return None
        return connection.connection.dbapi_connection

    @event.listens_for(engine, "before_cursor_execute")
    def before_statement(connection, cursor, statement, parameters, context, executemany):
        options = context.execution_options
        if options.get("timeouts"):
            WATCHDOG.arm(cursor.connection, options.get("client_timeout", seconds))

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def before_commit_or_rollback(connection):
        target = dbapi_connection(connection)
        if target is not None:
            WATCHDOG.arm(target, seconds)

    @event.listens_for(engine, "handle_error")
    def on_error(context):
        connection = context.connection
        target = None if connection is None else dbapi_connection(connection)
        if target is not None and WATCHDOG.disarm(target):
            context.invalidate_pool_on_disconnect = False
            gate.close()
            raise DatabaseTimeout("the database did not answer in time: connection cut")

    @event.listens_for(engine, "checkin")
    @event.listens_for(engine, "invalidate")
    def on_release(dbapi_connection, *args):
        if dbapi_connection is not None:
            WATCHDOG.disarm(dbapi_connection)


def bound(engine, settings):
    """The client-side bounds of one engine (PostgreSQL): a connect gate of its own, and the
    watchdog when ``statement_timeout`` is set."""
    if engine.dialect.name != "postgresql":
        return
    gate = ConnectGate(POSTGRES_CONNECT_ARGS["connect_timeout"] + 1)
    gate.install(engine)
    statement_ms = timeouts_ms(settings)["statement_timeout"]
    if statement_ms:
        watch(engine, statement_ms / 1000 + GRACE, gate)


def includeme(config):
    """The bounds of the service's engine, and of each replica's (``data.replicas``)."""
    replicas = config.registry.get("replicas")
    engines = [config.registry["dbsession_factory"].kw["bind"]]
    engines += [replica.engine for replica in replicas.replicas] if replicas else []
    for engine in engines:
        bound(engine, config.get_settings())
