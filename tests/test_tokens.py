"""A token's life after it is made: looked up once per request (no SQL without one), its use
noted at most once a minute and never waited for, and ``myservice-token``, the command that
makes, lists and revokes tokens. Who may do what with a token: test_security.
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from myservice.data.engine import SQLITE_BUSY_TIMEOUT_MS
from myservice.data.models.meta import utcnow
from myservice.data.models.token import LAST_USED_RESOLUTION, TOKENS, note_use
from myservice.data.scripts import session_scope
from myservice.edge.tokencache import BOUND
from tests.support.app import with_token
from tests.support.client import bearer, call
from tests.support.database import new_token, short_lived_engine
from tests.support.factories import ADA, unique
from tests.support.paths import ROOT

# -- how the token is looked up --------------------------------------------------------------


@pytest.fixture
def statements(app):
    """The SQL statements the app sends while the test runs."""
    sent = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(connection, cursor, statement, *args):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_a_request_without_a_token_sends_no_sql(anonymous, statements):
    anonymous.get("/users", status=401)
    anonymous.post_json("/users", ADA, status=401)
    assert statements == []


def last_used(testapp, app, name):
    connection = app.registry["dbsession_factory"].kw["bind"]
    return connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))


def set_last_used(app, name, when):
    connection = app.registry["dbsession_factory"].kw["bind"]
    connection.execute(update(TOKENS).where(TOKENS.c.name == name).values(last_used_at=when))


def test_last_used_is_written_at_most_once_a_minute(testapp, app, db_url, statements):
    name = unique("noted-once")  # a token this process has not seen yet
    client = with_token(app, new_token(db_url, name, ["read", "write"]))
    long_ago = utcnow() - 2 * LAST_USED_RESOLUTION
    set_last_used(app, name, long_ago)
    statements.clear()

    client.get("/users", status=200)
    noted = last_used(testapp, app, name)
    client.get("/users", status=200)
    client.post_json("/users", ADA, status=201)

    assert noted > long_ago
    assert last_used(testapp, app, name) == noted  # the next requests wrote nothing
    updates = [s for s in statements if s.lstrip().startswith("UPDATE api_tokens")]
    assert len(updates) == 1


# -- the myservice-token command -------------------------------------------------------------


def myservice_token(db_url, *args):
    return subprocess.run(
        [Path(sys.executable).with_name("myservice-token"), *args],
        env={**os.environ, "DATABASE_URL": db_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_creates_a_token_that_works_and_lists_and_revokes_it(db_url, app):
    name = unique("cli")
    created = myservice_token(
        db_url, "create", "development.ini", "--name", name, "--scope", "read"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n"  # the token alone: TOKEN=$(myservice-token ...)
    client = with_token(app, secret)
    client.get("/users", status=200)
    client.post_json("/users", ADA, status=403)

    listed = myservice_token(db_url, "list", "development.ini")
    assert listed.returncode == 0
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(name + "\t")]
    assert line.split("\t")[1] == "read" and line.endswith("active")
    assert secret not in listed.stdout

    revoked = myservice_token(db_url, "revoke", "development.ini", name)
    assert revoked.returncode == 0
    refused_within_the_bound(client, time.monotonic())
    assert myservice_token(db_url, "list", "development.ini").stdout.count(f"{name}\t") == 1


def refused_within_the_bound(client, revoked_at):
    """Poll GET /users until one sent ``BOUND`` seconds after ``revoked_at`` is refused (each
    process believes a token it has read for that long: myservice/edge/tokencache.py); every answer
    to a request sent that late must be 401."""
    deadline = revoked_at + BOUND + 10
    while time.monotonic() < deadline:
        sent_at = time.monotonic()
        status = client.get("/users", expect_errors=True).status_int
        if sent_at >= revoked_at + BOUND:
            assert status == 401
            return
        assert status in (200, 401)
        time.sleep(0.05)
    pytest.fail("no request was refused within 10 s after the bound")


def test_the_command_sets_an_expiry(db_url):
    name = unique("expiring")
    args = ("create", "development.ini", "--name", name, "--scope", "read", "--expires-in", "30d")
    assert myservice_token(db_url, *args).returncode == 0
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        expires_at = connection.scalar(select(TOKENS.c.expires_at).where(TOKENS.c.name == name))
    assert timedelta(days=29) < expires_at - utcnow() <= timedelta(days=30)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("create", "development.ini", "--name", "x"), 2),  # no scope
        (("create", "development.ini", "--name", "x", "--scope", "admin"), 2),
        (("create", "development.ini", "--name", "bad name", "--scope", "read"), 2),
        (("create", "development.ini", "--name", "x", "--scope", "read", "--expires-in", "9y"), 2),
        (("create", "development.ini", "--name", "tests", "--scope", "read"), 1),  # taken
        (("revoke", "development.ini", "nobody-has-this-name"), 1),
        (("frobnicate", "development.ini"), 2),
        ((), 2),
    ],
)
def test_bad_arguments_give_a_one_line_error_and_a_failing_status(db_url, args, status):
    result = myservice_token(db_url, *args)
    assert result.returncode == status
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "error:" in line


def test_a_read_through_the_real_server_notes_the_tokens_use(server, db_url):
    name = unique("noted")
    secret = new_token(db_url, name, ["read"])

    reply = call(server, "GET", "/users?limit=1", headers=bearer(secret))

    assert reply.status == 200
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        noted = connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))
    assert noted is not None and utcnow() - noted < LAST_USED_RESOLUTION


@contextmanager
def token_row_held(db_url, name):
    """A writer that holds what noting ``name``'s use needs: SQLite's write lock, or on
    PostgreSQL the token's row lock, until the block ends."""
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.execute(select(TOKENS.c.id).where(TOKENS.c.name == name).with_for_update())
        try:
            yield
        finally:
            connection.exec_driver_sql("ROLLBACK")


#: Seconds a read may take while a writer holds what noting its token's use needs. A read that
#: waited would take SQLite's whole busy timeout (5 s) before it gave up; on PostgreSQL it would
#: end in the watchdog's 503. Half the busy timeout tells the two apart with 2.5 s to spare for a
#: loaded machine (the read itself takes milliseconds): not a benchmark.
NEVER_WAITS = SQLITE_BUSY_TIMEOUT_MS / 1000 / 2


def test_a_read_never_waits_to_note_its_tokens_use(server, db_url):
    name = unique("busy")
    secret = new_token(db_url, name, ["read"])

    with token_row_held(db_url, name):
        started = time.monotonic()
        reply = call(server, "GET", "/users?limit=1", headers=bearer(secret))
        elapsed = time.monotonic() - started

    assert reply.status == 200, reply.body  # not a 503 after SQLite's busy timeout
    assert elapsed < NEVER_WAITS, f"the read took {elapsed:.2f} s: it waited for the lock"
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        noted = connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))
    assert noted is None  # skipped: a later request notes it


@contextmanager
def use_being_noted(db_url, name):
    """Another transaction, noting the token ``name``'s use and open until the block ends (on
    PostgreSQL: holding what ``note_use`` locks on the token's row), then committed."""
    with session_scope({"sqlalchemy.url": db_url}) as session:
        token = session.execute(select(TOKENS.c.id).where(TOKENS.c.name == name)).one()
        note_use(session, token, utcnow())
        yield


def test_a_write_stores_its_idempotency_key_while_its_tokens_use_is_being_noted(
    server, db_url, postgres_only
):
    """Two transactions of one token: the first notes the token's use and has not committed;
    the second stores an Idempotency-Key, whose foreign-key check takes FOR KEY SHARE on the
    token's row. A use note that locked the row FOR UPDATE made the second wait until
    lock_timeout and answer 503; FOR NO KEY UPDATE does not conflict with a key check. (SQLite
    has no row locks: its writers take turns.)"""
    name = unique("noting")
    secret = new_token(db_url, name, ["read", "write"])
    body = {"username": unique("keyed"), "email": f"{unique('keyed')}@example.org"}

    with use_being_noted(db_url, name):
        reply = call(
            server, "POST", "/users", body, headers={**bearer(secret), "Idempotency-Key": "k1"}
        )

    assert reply.status == 201, reply.body
