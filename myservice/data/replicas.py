"""Reads on PostgreSQL streaming replicas: which database serves a reading request.

``myservice.replica_urls`` (or ``DATABASE_REPLICA_URLS``) names the replicas; without any, this
module builds nothing and no request pays for it. With them:

- Each replica gets its own engine, built by ``db.make_engine`` as the primary's is (its pool
  sized alike, ``myservice.pgbouncer`` alike, the same bounds from ``data.timeouts``).
- A GET or HEAD is served by a replica (``read_engine``), every other request by the primary.
  A read that carries a position (a ``Consistency-Token``, parsed by ``edge.consistency`` into
  ``environ[POSITION_KEY]``) goes to a replica known to have replayed that far; else it polls
  the most advanced one for up to ``myservice.replica_wait_ms``; else the primary serves it. A
  read without one goes to a replica the monitor last saw within ``myservice.max_replica_lag_ms``
  of the primary, else to the primary.
- Each replica's state (``up``, ``lagging``, ``down``), lag and replay position are kept by a
  thread per process (``data.replicamonitor``).
- A replica that fails a request (it cannot be reached, or a connection breaks mid-read) is
  marked down at once, and its error is tagged (``is_replica_failure``): the error views have
  pyramid_retry replay the request, which then goes elsewhere. The monitor brings it back.
- A position is a WAL position (an LSN as an integer): after a write, the primary's
  ``pg_current_wal_lsn()`` (commits are synchronous: it is at or past the commit's record);
  after a read, the serving database's position taken after the read's statements, so it is
  at or past every commit the read saw.
"""

import itertools
import logging
import os
import time
from dataclasses import dataclass

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from myservice.data.errors import BadSettings
from myservice.data.replicamonitor import (
    DOWN,
    PRIMARY_POSITION,
    PROBE_SECONDS,
    REPLAY_POSITION,
    UP,
    Monitor,
    lsn_number,
)
from myservice.data.timeouts import DatabaseTimeout

log = logging.getLogger(__name__)

URLS_SETTING = "myservice.replica_urls"
URLS_ENVIRONMENT = "DATABASE_REPLICA_URLS"
WAIT_SETTING = "myservice.replica_wait_ms"
MAX_LAG_SETTING = "myservice.max_replica_lag_ms"
DEFAULT_WAIT_MS = 100
DEFAULT_MAX_LAG_MS = 1000

#: The methods a replica may serve (``db.dbsession`` sends every other one to the primary).
READ_METHODS = frozenset({"GET", "HEAD"})

#: environ keys: the position a read must see (an int), and the ``Database`` that served it.
POSITION_KEY = "myservice.consistency_position"
SERVED_KEY = "myservice.served_by"
#: environ key: the position a read saw, taken at its end (``see_position_at_end``).
SEEN_KEY = "myservice.position_seen"

#: Seconds between two looks at a replica's replay position while a read waits for it.
POLL_SECONDS = 0.005


def replica_urls(settings):
    """The replicas' URLs: ``DATABASE_REPLICA_URLS`` from the environment, else the setting
    (whitespace-separated); postgres means psycopg 3, as for the primary."""
    raw = os.environ.get(URLS_ENVIRONMENT) or settings.get(URLS_SETTING) or ""
    urls = []
    for text in raw.split():
        try:
            url = make_url(text)
        except Exception:  # sqlalchemy.exc.ArgumentError, ValueError: not a URL
            raise BadSettings(f"{URLS_SETTING}: {text.split('@')[-1]!r} is not a URL") from None
        if url.drivername in ("postgres", "postgresql"):
            url = url.set(drivername="postgresql+psycopg")
        if url.get_backend_name() != "postgresql":
            raise BadSettings(f"{URLS_SETTING}: replicas are PostgreSQL streaming replicas only")
        urls.append(url)
    return urls


def milliseconds(settings, name, default):
    value = settings.get(name, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise BadSettings(f"{name} must be a whole number of milliseconds, not {value!r}") from None
    if value < 0:
        raise BadSettings(f"{name} must be 0 or more milliseconds, not {value}")
    return value


@dataclass(eq=False)
class Database:
    """One database reads can be served by: the primary or a replica, and what is known of it."""

    name: str
    engine: object
    is_primary: bool = False
    state: str = DOWN  # until the monitor has seen it
    position: int | None = None  # replay position (replica) as last seen
    lag_seconds: float | None = None
    reads: int = 0  # reads this process served from it

    @property
    def lag_ms(self):
        return None if self.lag_seconds is None else round(self.lag_seconds * 1000)

    @property
    def position_statement(self):
        return PRIMARY_POSITION if self.is_primary else REPLAY_POSITION

    def current_position(self, connection=None):
        """Its WAL position now, in one round trip (on ``connection``, else a pooled one):
        current on the primary, replayed on a replica; None when it cannot say (or answer)."""
        options = {"access": "read", "timeouts": True, "client_timeout": PROBE_SECONDS}
        try:
            if connection is not None:
                return lsn_number(connection.exec_driver_sql(self.position_statement).scalar())
            with self.engine.connect().execution_options(**options) as connection:
                return lsn_number(connection.exec_driver_sql(self.position_statement).scalar())
        except (DBAPIError, DatabaseTimeout) as error:
            log.warning("%s: no WAL position: %s", self.name, getattr(error, "orig", error))
            return None


class Replicas:
    """The primary and the replicas of one app, and the choice between them."""

    def __init__(self, primary_engine, replica_engines, wait_ms, max_lag_ms):
        self.primary = Database("primary", primary_engine, is_primary=True, state=UP)
        self.replicas = [
            Database(f"replica-{number}", engine)
            for number, engine in enumerate(replica_engines, start=1)
        ]
        self.wait_seconds = wait_ms / 1000
        self.max_lag_seconds = max_lag_ms / 1000
        self.fallbacks = {"lag": 0, "position": 0}  # reads the primary served, by why
        self.turns = itertools.count()
        self.monitor = Monitor(self)
        for replica in self.replicas:
            mark_down_on_failure(replica)

    @property
    def databases(self):
        return [self.primary, *self.replicas]

    def read_engine(self, environ):
        """The engine to serve a read with: see the module docstring. Notes the choice in
        ``environ[SERVED_KEY]`` (a replay of the request chooses again)."""
        database = self.choose(environ.get(POSITION_KEY))
        database.reads += 1
        environ[SERVED_KEY] = database
        return database.engine

    def choose(self, position):
        self.monitor.ensure_running()
        if position is None:
            fresh = [replica for replica in self.replicas if replica.state == UP]
            return self.take_turns(fresh) or self.fall_back("lag")
        answering = [replica for replica in self.replicas if replica.state != DOWN]
        there = [r for r in answering if r.position is not None and r.position >= position]
        if there:
            return self.take_turns(there)
        if answering and self.wait_seconds:
            ahead = max(answering, key=lambda replica: replica.position or 0)
            if self.wait_for(ahead, position):
                return ahead
        return self.fall_back("position")

    def take_turns(self, candidates):
        if not candidates:
            return None
        return candidates[next(self.turns) % len(candidates)]

    def fall_back(self, reason):
        self.fallbacks[reason] += 1
        return self.primary

    def wait_for(self, replica, position):
        """Whether ``replica`` replays up to ``position`` within ``wait_seconds`` (polled on
        one pooled connection; no sleep when it is there already)."""
        deadline = time.monotonic() + self.wait_seconds
        options = {"access": "read", "timeouts": True, "client_timeout": PROBE_SECONDS}
        try:
            with replica.engine.connect().execution_options(**options) as connection:
                while True:
                    seen = lsn_number(connection.exec_driver_sql(REPLAY_POSITION).scalar())
                    if seen is not None and seen >= position:
                        replica.position = max(seen, replica.position or 0)
                        return True
                    if time.monotonic() + POLL_SECONDS > deadline:
                        return False
                    time.sleep(POLL_SECONDS)
        except (DBAPIError, DatabaseTimeout):
            return False  # marked down already (``mark_down_on_failure``)

    def see_position_at_end(self, transaction, session, environ):
        """Have a read note the position it saw (``environ[SEEN_KEY]``) on its own connection,
        after its statements, as pyramid_tm commits it: one round trip, no second checkout. A
        read that fails or answers 4xx is aborted (the commit veto), and notes none."""
        database = environ[SERVED_KEY]
        environ.pop(SEEN_KEY, None)  # an earlier attempt's

        def see():
            environ[SEEN_KEY] = database.current_position(session.connection())

        transaction.addBeforeCommitHook(see)

    def position_after(self, environ, wrote):
        """The position to answer a request with: the primary's after a write (asked now, after
        its COMMIT), what a read saw (``see_position_at_end``); None when unknown."""
        return self.primary.current_position() if wrote else environ.get(SEEN_KEY)

    def health(self):
        """Each replica's name, state and lag (ms), as this process last saw them (a process
        that has served no read yet starts its monitor here)."""
        self.monitor.ensure_running()
        return [
            {"name": replica.name, "state": replica.state, "lag_ms": replica.lag_ms}
            for replica in self.replicas
        ]


def mark_down_on_failure(replica):
    """A replica that cannot be reached, or whose connection breaks, is down from now on (the
    monitor decides when it is back), and its error says so (``is_replica_failure``).

    Listens first, before ``data.timeouts``' listener, which may replace the error by a
    ``DatabaseTimeout`` raised in the listener: that one's ``__context__`` is the tagged error.
    """

    def on_error(context):
        if not (context.connection is None or context.is_disconnect or lost(context)):
            return
        if replica.state != DOWN:
            log.warning("%s is down: %s", replica.name, context.original_exception)
        replica.state = DOWN
        for error in (context.original_exception, context.sqlalchemy_exception):
            if error is not None:
                error.failed_replica = replica.name

    event.listen(replica.engine, "handle_error", on_error, insert=True)


def lost(context):
    """A connection-level failure: psycopg's own (no SQLSTATE: the socket broke, it was cut),
    or the server's (class 08, connection exception; 57P, shutdown or not yet accepting). Not
    a statement's error (a cancelled query, 57014, is no reason to leave a replica)."""
    error = context.original_exception
    sqlstate = getattr(error, "sqlstate", None)
    if not isinstance(error, psycopg.OperationalError):
        return False
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def is_replica_failure(exc):
    """Whether ``exc`` (or an error it was raised from) is a replica's failure: the request
    may be replayed on another database."""
    for _ in range(4):
        if exc is None:
            return False
        if getattr(exc, "failed_replica", None):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def replicas_from_settings(settings, primary_engine, make_engine):
    """The app's ``Replicas``, or None when none is configured (nothing else is built)."""
    urls = replica_urls(settings)
    if not urls:
        return None
    if primary_engine.dialect.name != "postgresql":
        raise BadSettings(f"{URLS_SETTING}: replicas need a PostgreSQL primary, not SQLite")
    wait_ms = milliseconds(settings, WAIT_SETTING, DEFAULT_WAIT_MS)
    max_lag_ms = milliseconds(settings, MAX_LAG_SETTING, DEFAULT_MAX_LAG_MS)
    engines = [make_engine(settings, url) for url in urls]
    return Replicas(primary_engine, engines, wait_ms, max_lag_ms)
