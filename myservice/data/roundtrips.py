"""A write's BEGIN rides in the message of its first statement, and its COMMIT in the message
of the change feed's statement (PostgreSQL): a write of one row is two round trips, not four.

The BEGIN (with the request's ``SET LOCAL`` timeouts: ``myservice.data.timeouts``) used to be a
round trip of its own when the session took its connection, before any statement: 11% of a
served POST's interpreter time went to it. ``carry_begin`` has the connection's next cursor
prepend it instead (``CarryingCursor``); a transaction that sends no statement sends no BEGIN,
and psycopg then sends no COMMIT or ROLLBACK either (the server saw no transaction).

Every write ends with the feed's statement (``models.change.append_changes``), which locks the
feed's counter row, one row that every writer needs, until its transaction ends. Sent on its
own, the COMMIT would follow a round trip later, and under load later still: the thread must
get the interpreter back to send it, and every other writer waits for the row meanwhile. Sent
in the same message, the row is held for the server's own work only (docs/performance.md).

Several statements in one message need PostgreSQL's simple query protocol, which carries no
parameters, so these statements are bound by the client (psycopg's ``ClientCursor``, which
quotes each value for its connection) instead of the server. PostgreSQL runs a message's
statements in order and stops at the first error: a feed statement that fails (a lock timeout,
a cancel) never reaches the COMMIT, and the transaction is rolled back as usual.

What the separate COMMIT gave for free: a process that dies while its statement waits (for the
row, say) never commits, because the COMMIT was never sent. Here the server holds the COMMIT
already and would run it once the row frees, after the client is gone. So a process that exits
with such a message in flight cancels it first (``cancel_commits_in_flight``, at exit and when a
server process ends): a request abandoned at the graceful stop's deadline is still rolled back.
Only a process killed outright (SIGKILL) can leave one to commit, within ``lock_timeout`` and
``statement_timeout`` of its death, unanswered, like a COMMIT lost on its way back.
"""

import atexit
import contextlib
import functools
import threading

from psycopg import ClientCursor, Cursor

#: Seconds to wait for the server to take a cancel request, at exit.
CANCEL_TIMEOUT = 2.0

#: The driver connections whose statement-and-COMMIT message is in flight.
_in_flight = set()
_in_flight_lock = threading.Lock()


class CarryingCursor(ClientCursor):
    """A client-bound cursor for one statement whose message also carries the transaction's
    ``begin`` before it (the BEGIN not sent yet) and, with ``commit``, its COMMIT after it. It
    answers with the statement's result, and gives its connection back the server-bound
    ``Cursor``. Its classes are made by ``carrying_cursor``."""

    begin = ""
    commit = False
    begin_results = 0  # the results before the statement's: BEGIN's and the timeouts' SELECT's

    def execute(self, query, params=None, **options):
        self.connection.cursor_factory = Cursor
        before = f"{self.begin}; " if self.begin else ""
        after = "; COMMIT" if self.commit else ""
        with uncounted(self.connection):
            super().execute(f"{before}{query}{after}", params, **options)
        for _ in range(self.begin_results):
            self.nextset()
        return self

    def executemany(self, query, params_seq, **options):
        """One message per row: the BEGIN goes first, on its own (``execute_and_commit``, the
        only one that asks for the COMMIT, executes one statement)."""
        self.connection.cursor_factory = Cursor
        if self.begin:
            self.connection.execute(self.begin)
        with uncounted(self.connection):
            return super().executemany(query, params_seq, **options)


@contextlib.contextmanager
def uncounted(connection):
    """Run client-bound statements on ``connection`` without psycopg counting them towards
    preparing: they are never prepared, and their text differs with every value, so each one
    would only push out the counts of the server-bound statements that may be prepared. With no
    ``prepare_threshold`` (psycopg's public switch) it counts none."""
    threshold, connection.prepare_threshold = connection.prepare_threshold, None
    try:
        yield
    finally:
        connection.prepare_threshold = threshold


@functools.cache
def carrying_cursor(begin="", commit=False):
    """The ``CarryingCursor`` class that sends ``begin`` before its statement, and the COMMIT
    after it with ``commit`` (one class per engine's BEGIN text, made once)."""
    results = begin.count(";") + 1 if begin else 0
    attributes = {"begin": begin, "commit": commit, "begin_results": results}
    return type("CarryingCursor", (CarryingCursor,), attributes)


def carry_begin(connection, begin):
    """Have ``begin`` (the transaction's BEGIN, as ``engine.begin`` makes it) sent in the
    message of ``connection``'s next statement instead of on its own."""
    connection.connection.dbapi_connection.cursor_factory = carrying_cursor(begin)


def forget_begin(dbapi_connection, connection_record):
    """A pooled connection checked in: a BEGIN it never sent (no statement came) is dropped."""
    if dbapi_connection is not None:
        dbapi_connection.cursor_factory = Cursor


def execute_and_commit(session, statement, parameters):
    """Execute ``statement`` and COMMIT ``session``'s transaction, in one message; return the
    statement's result. The session's own COMMIT that follows finds no transaction open, and
    psycopg sends nothing for it.

    When the session's transaction is a SAVEPOINT of an outer one (a test's, which is rolled
    back at its end), the COMMIT is not the session's to send: the statement runs alone.
    """
    connection = session.connection()
    if connection.in_nested_transaction():
        return connection.execute(statement, parameters)
    driver_connection = connection.connection.dbapi_connection
    pending = driver_connection.cursor_factory  # a BEGIN still to be sent goes with it too
    begin = pending.begin if issubclass(pending, CarryingCursor) else ""
    driver_connection.cursor_factory = carrying_cursor(begin, commit=True)
    with _in_flight_lock:
        _in_flight.add(driver_connection)
    try:
        return connection.execute(statement, parameters)
    finally:
        with _in_flight_lock:
            _in_flight.discard(driver_connection)
        driver_connection.cursor_factory = Cursor  # as the cursor does, should it not be made


@atexit.register
def cancel_commits_in_flight():
    """Cancel every statement-and-COMMIT message still waiting for the server, so that none
    commits after this process is gone. For a process that exits with requests in flight
    (a server at its graceful stop's deadline); the others have none."""
    with _in_flight_lock:
        waiting = list(_in_flight)
    for driver_connection in waiting:
        with contextlib.suppress(Exception):  # answered or closed meanwhile: nothing to cancel
            driver_connection.cancel_safe(timeout=CANCEL_TIMEOUT)
