"""Waiting until a request waits for a lock the test holds: one way, on both databases.

A test that proves what happens to a request stuck behind a lock first makes sure the request
is stuck: only then does it release the lock, stop the server, or look at the pool.

PostgreSQL: the test's connection ``holder`` holds the lock in its transaction. A request waits
for it when PostgreSQL counts ``holder``'s backend among those that block the request's
(``pg_blocking_pids``). That is read from ``pg_locks``, which shows the lock manager as it is
(not a statistics snapshot, as ``pg_stat_activity`` in a transaction would), on a connection of
its own, and counts only what waits for this holder: never another test's lock, nor another
database's.

SQLite: the lock is the write lock, and a request waits for it at its ``BEGIN IMMEDIATE``
(``myservice.data.db``). SQLite shows no other connection's wait, so this needs the request to
run in this process on ``engine``: the statement's trace callback, which sqlite3_step calls as
the statement starts, right before it asks for the lock, says it has begun; the driver's return
says it has ended. While the test holds the lock, a BEGIN IMMEDIATE that has begun and not
returned is waiting. (A real server's request runs in another process: tests that need one to
wait hold their lock on PostgreSQL.)
"""

import threading
import time

import pytest
from sqlalchemy import event, text

from tests.support.client import CLIENT_TIMEOUT

#: Seconds between two looks.
POLL = 0.01

BLOCKED_BY_HOLDER = text(
    "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
    " AND CAST(:holder AS integer) = ANY(pg_blocking_pids(pid))"
)


class LockWait:
    """``with LockWait(holder, engine) as lock_wait:``, entered before the request is sent;
    ``lock_wait.wait_until_waiting(reply)`` once it is, and the lock held.

    ``holder``: the test's connection that holds the lock (on PostgreSQL its backend is the
    one waited for). ``engine``: the engine of the app in this process whose request will wait
    (SQLite only, where the wait can only be seen from inside that process).
    """

    STATEMENT = "BEGIN IMMEDIATE"

    def __init__(self, holder, engine=None):
        self.holder = holder
        self.sqlite = holder.dialect.name == "sqlite"
        if self.sqlite and engine is None:
            raise ValueError("on SQLite only a request of an engine in this process is seen")
        self.begun = threading.Event()
        self.returned = threading.Event()
        self.traced_connection = None  # the sqlite3 connection of the BEGIN IMMEDIATE
        self.listeners = [
            (engine, "before_cursor_execute", self.before),
            (engine, "after_cursor_execute", self.after),
            (engine, "handle_error", self.failed),
        ]

    def __enter__(self):
        if self.sqlite:
            for listener in self.listeners:
                event.listen(*listener)
        return self

    def __exit__(self, *exc_info):
        if self.sqlite:
            for listener in self.listeners:
                event.remove(*listener)

    def wait_until_waiting(self, reply=None, seconds=CLIENT_TIMEOUT):
        """Return once the request waits for the lock; fail if ``reply`` (the request's
        ``Future``, when the test has one) ends first, or if no request waits within
        ``seconds`` (polled, bounded)."""
        deadline = time.monotonic() + seconds
        if self.sqlite:
            waiting = self.begun.is_set
        else:
            watcher = self.holder.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            backend = self.holder.connection.driver_connection.info.backend_pid

            def waiting():
                return watcher.execute(BLOCKED_BY_HOLDER, {"holder": backend}).scalar() > 0

        try:
            while not waiting():
                if reply is not None and reply.done():
                    outcome = reply.exception() or getattr(reply.result(), "status", "answered")
                    pytest.fail(f"the request never waited for the lock; it ended: {outcome}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no request waited for the lock within {seconds} s")
                time.sleep(POLL)
        finally:
            if not self.sqlite:
                watcher.close()
        if self.sqlite:
            assert not self.returned.is_set(), f"{self.STATEMENT} returned while the lock was held"

    # -- SQLite: the trace of the request's BEGIN IMMEDIATE ----------------------------------

    def before(self, conn, cursor, statement, *args):
        if statement.startswith(self.STATEMENT):
            self.traced_connection = cursor.connection
            self.traced_connection.set_trace_callback(self.traced)

    def traced(self, sql):
        if sql.startswith(self.STATEMENT):
            self.begun.set()

    def after(self, conn, cursor, statement, *args):
        if statement.startswith(self.STATEMENT):
            self.end_trace()

    def failed(self, context):
        if context.statement and context.statement.startswith(self.STATEMENT):
            self.end_trace()

    def end_trace(self):
        self.traced_connection.set_trace_callback(None)  # a pooled connection: leave it clean
        self.returned.set()
