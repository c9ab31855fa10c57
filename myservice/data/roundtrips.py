"""Fewer round trips for a write on PostgreSQL: its BEGIN and its COMMIT ride in the messages
of its first and last statements.

A write request would otherwise send BEGIN (with its ``SET LOCAL`` timeouts), its statements,
then COMMIT, each a round trip of its own, and under load each round trip also costs the
thread a wait for the interpreter and for a core. Two of them carry nothing but a keyword:

- **BEGIN rides with the first statement.** ``db.begin`` does not send a write's BEGIN; it
  hands the connection a cursor class (``opening_cursor``) for its next statement, whose text
  then starts with the BEGIN and its ``SET LOCAL``\\ s (``carry``). A write whose session never
  sends a statement sends no BEGIN at all.
- **COMMIT rides with the change feed's statement** (``execute_and_commit``). That statement
  locks the feed's counter row, which every writer needs; sent apart, the COMMIT would come a
  round trip later, and every other writer would wait for it meanwhile. Sent together, the row
  is held for the server's own work only.

Several statements in one message need PostgreSQL's simple query protocol, which carries no
parameters: these statements are bound by the client (psycopg's ``ClientCursor``, which quotes
each value for its connection) instead of the server, and lose only the server's prepared plan.
PostgreSQL runs a message's statements in order and stops at the first error; the transaction
is then aborted and rolled back as usual. SQLite sends its ``BEGIN IMMEDIATE`` on its own (its
lock is taken there) and commits as usual.
"""

import functools

from psycopg import ClientCursor, Cursor
from sqlalchemy import event

#: The execution option that makes a statement's message end with the COMMIT.
AND_COMMIT = "and_commit"


class OpeningCursor(ClientCursor):
    """The cursor of a write's first statement: its message starts with ``opening`` (the BEGIN
    and its SET LOCALs), and it answers with the statement's own result, after theirs."""

    opening = ""
    #: Whether ``opening`` went out (SQLAlchemy may run several statements on one cursor).
    begun = False
    #: Results to step over before the statement's own: set by ``carry`` when it prepends.
    skip = 0

    def execute(self, query, params=None, **options):
        super().execute(query, params, **options)
        for _ in range(self.skip):
            self.nextset()
        self.skip = 0
        return self


@functools.cache
def opening_cursor(opening):
    """The ``OpeningCursor`` class whose statements start with ``opening``."""
    return type("OpeningCursor", (OpeningCursor,), {"opening": opening})


def begin_with_next_statement(connection, opening):
    """Send ``opening`` (a BEGIN, and its SET LOCALs) in the message of ``connection``'s next
    statement, instead of on its own."""
    connection.connection.dbapi_connection.cursor_factory = opening_cursor(opening)


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
    if not issubclass(driver_connection.cursor_factory, ClientCursor):  # BEGIN not yet sent
        driver_connection.cursor_factory = ClientCursor
    try:
        return connection.execute(statement, parameters, execution_options={AND_COMMIT: True})
    finally:
        driver_connection.cursor_factory = Cursor


def carry(connection, cursor, statement, parameters, context, executemany):
    """``before_cursor_execute``: put the BEGIN before a write's first statement, and the COMMIT
    after ``execute_and_commit``'s."""
    if isinstance(cursor, OpeningCursor) and not cursor.begun:
        cursor.begun = True
        cursor.connection.cursor_factory = Cursor  # the statements after it: server-bound
        if executemany:  # one message per parameter set: the BEGIN goes first, on its own
            cursor.execute(cursor.opening)
        else:
            statement = f"{cursor.opening}; {statement}"
            cursor.skip = cursor.opening.count(";") + 1
    if context is not None and context.execution_options.get(AND_COMMIT):
        statement += "; COMMIT"
    return statement, parameters


def install(engine):
    """Carry BEGIN and COMMIT on ``engine``'s connections (PostgreSQL)."""
    event.listen(engine, "before_cursor_execute", carry, retval=True)

    @event.listens_for(engine, "checkin")
    def server_bound_again(dbapi_connection, connection_record):
        # A write that never sent a statement leaves its opening cursor class behind.
        if dbapi_connection is not None:
            dbapi_connection.cursor_factory = Cursor
