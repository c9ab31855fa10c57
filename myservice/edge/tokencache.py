"""What each process remembers of the tokens it has seen, so that a request sends no statement
to learn who it is, and still refuses a revoked token within ``BOUND`` seconds everywhere.

A request's token is looked up in the database once; the row (or the fact that no token has
that secret) is kept in a per-process dict keyed by the ``Authorization`` header as it came, so
a request whose header is remembered neither parses it nor hashes its secret (with the
listener's start check made without a system call, that took 2.5% off what a served GET costs
the server's CPU: docs/performance.md). The header holds the secret: the dict keeps it in the
process's memory while the entry lives, as the request's own buffers held it, and never logs or
stores it. The row is checked on every request as before (revoked, expired against the clock of
the moment), so an expiry is exact. What a remembered row can miss is a change made since it
was read: a revocation, new scopes, a new expiry, a deleted or a new token. So a row is
believed only while this process knows that no such change has been committed without its
hearing of it:

- for ``BOUND`` seconds after it was read, always;
- on PostgreSQL, for as long as the process's listener vouches for it. A trigger on
  ``api_tokens`` sends ``NOTIFY myservice_tokens`` with every change but a use noted
  (alembic 0006); a thread per process holds one connection of its own that ``LISTEN``\\ s,
  and forgets everything it remembers on each notification. Every ``PING_SECONDS`` it asks
  the server a ``SELECT 1``: once answered, every notification committed before it was sent
  has been heard, so the listener vouches until ``BOUND`` seconds after it was sent, for the
  rows read since its ``LISTEN``. A listener that loses its connection stops vouching at once
  and reconnects; a row read before it is back is believed for ``BOUND`` seconds only.

A revocation therefore reaches every process within ``BOUND`` seconds of its commit: within
milliseconds where the listener hears it, and at the latest when the listener's word or the
row's ``BOUND`` runs out. SQLite has no notifications (nor does PostgreSQL through PgBouncer in
transaction pooling, which cannot hold a ``LISTEN``): there each row is believed for ``BOUND``
seconds, one lookup per token per process per second.

A row is remembered only if nothing was forgotten while it was being read (``generation``), so
a read that raced a notification cannot bring back what the notification removed. Unknown
secrets (and headers that are no ``Bearer`` token at all) are remembered too, for ``BOUND``
seconds at most, so a flood of one well-formed bogus token costs one statement per second, not
one per request; the dict is emptied when it holds ``MAX_ENTRIES``, so a flood of distinct ones
cannot grow it.
"""

import logging
import time
import weakref
from dataclasses import dataclass

import psycopg

from myservice.data.engine import behind_pgbouncer
from myservice.data.processthread import PerProcessThread
from myservice.data.timeouts import POSTGRES_CONNECT_ARGS

log = logging.getLogger(__name__)

#: Seconds within which every process refuses a token revoked (or changed) in the database.
BOUND = 1.0
#: Seconds between the listener's proofs that its connection hears the server.
PING_SECONDS = 0.25
#: Seconds between attempts to reconnect a listener that lost its connection, at most.
RECONNECT_MAX_SECONDS = 5.0
#: Entries kept before the dict is emptied.
MAX_ENTRIES = 10_000
#: The channel the trigger of alembic 0006 notifies.
CHANNEL = "myservice_tokens"
#: How the listener's connection shows in ``pg_stat_activity``.
APPLICATION_NAME = "myservice-token-listener"


@dataclass(slots=True)
class Entry:
    row: object  # the token's columns as ``find_by_hash`` reads them, or None: no such token
    read_at: float  # time.monotonic() just before it was read
    generation: int
    noted_until: float | None = None  # monotonic: this process notes the token's use from then


class TokenCache:
    """The tokens a process has seen, believed as the module docstring says."""

    def __init__(self, engine=None):
        self.entries = {}
        self.generation = 0
        self.vouched_until = float("-inf")  # monotonic: the listener's word holds until then
        self.listening_since = float("inf")  # monotonic: for rows read since then
        self.listener = Listener(self, engine) if engine is not None else None

    def get(self, key):
        """The entry for ``key`` (a request's ``Authorization`` header) when it may be
        believed, else None."""
        entry = self.entries.get(key)
        if entry is None or entry.generation != self.generation:
            return None
        now = time.monotonic()
        if now < entry.read_at + BOUND:
            return entry
        if (
            entry.row is not None
            and self.listening_since <= entry.read_at
            and now < self.vouched_until
        ):
            return entry
        return None

    def read(self, key, lookup):
        """The believed entry for ``key``, else a new one from ``lookup()`` (remembered)."""
        if self.listener is not None:
            self.listener.ensure_running()
        entry = self.get(key)
        if entry is not None:
            return entry
        generation, read_at = self.generation, time.monotonic()
        entry = Entry(lookup(), read_at, generation)
        if generation == self.generation:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries = {}
            self.entries[key] = entry
        return entry

    def forget(self):
        """Believe nothing remembered so far (a change was committed, or may have been)."""
        self.generation += 1
        self.entries = {}


class Listener(PerProcessThread):
    """The thread that hears ``NOTIFY myservice_tokens`` for one process's ``TokenCache``.

    Started by the first request that reads a token in a process (so a forked worker starts its
    own), stopped when the process that runs it disposes of the engine
    (``data.processthread``). Its connection is its own, outside the pool.
    """

    thread_name = "token-listener"

    def __init__(self, cache, engine):
        super().__init__(engine)
        self.cache_ref = weakref.ref(cache)
        self.url = engine.url
        self.dialect = engine.dialect
        self.connections = 0  # made so far
        self.losses = 0  # connections lost so far (each stopped the listener's word at once)
        self.backend_pid = None  # the server process of the current connection

    def run(self):
        delay = PING_SECONDS
        while not self.stopped.is_set():
            try:
                with self.connect() as connection:
                    delay = PING_SECONDS
                    self.listen(connection)
            except psycopg.Error as error:
                self.losses += 1
                log.warning(
                    "token listener: %s; tokens are looked up every %g s until it is back",
                    str(error).strip(),
                    BOUND,
                )
            except Exception:
                self.losses += 1
                log.exception("token listener failed; tokens are looked up every %g s", BOUND)
            cache = self.cache_ref()
            if cache is None:
                return
            cache.vouched_until = float("-inf")
            self.stopped.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def connect(self):
        _, params = self.dialect.create_connect_args(self.url)
        params = {**POSTGRES_CONNECT_ARGS, **params, "application_name": APPLICATION_NAME}
        return psycopg.connect(**params, autocommit=True)

    def listen(self, connection):
        self.connections += 1
        self.backend_pid = connection.info.backend_pid
        cache = self.cache_ref()
        if cache is None:
            return
        cache.listening_since = time.monotonic()  # a row read before LISTEN is not vouched for
        connection.execute(f"LISTEN {CHANNEL}")
        while not self.stopped.is_set():
            sent = time.monotonic()
            connection.execute("SELECT 1")
            self.hear(connection, timeout=0)  # every change committed before ``sent``
            cache.vouched_until = sent + BOUND
            self.hear(connection, timeout=PING_SECONDS)

    def hear(self, connection, timeout):
        """Forget everything at each notification received (or kept since the last call)
        within ``timeout`` seconds."""
        cache = self.cache_ref()
        for _ in connection.notifies(timeout=timeout):
            cache.forget()


def token_cache(engine, settings):
    """The cache for a process serving ``engine``'s database: with a listener on PostgreSQL
    reached directly, without one on SQLite or through PgBouncer (``engine.behind_pgbouncer``)."""
    listens = engine.dialect.name == "postgresql" and not behind_pgbouncer(settings)
    return TokenCache(engine if listens else None)
