"""Tokens without a statement per request (myservice/edge/tokencache.py), and revocation everywhere
within ``BOUND`` seconds all the same.

Each process remembers the tokens it has read; a lookup happens at most once per ``BOUND`` per
token and process (SQLite; PostgreSQL while its listener is away), or once for as long as the
listener vouches (PostgreSQL). A revocation through the command line reaches a second server
process within the bound; on PostgreSQL the notification itself is proven to arrive, to leave
out the use noted, and to be missed by no listener that loses its connection.
"""

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import webtest
from sqlalchemy import create_engine, event, update

from myservice.data.models.token import TOKENS, sha256
from myservice.edge.tokencache import BOUND, TokenCache
from tests.support.app import with_token
from tests.support.client import bearer, call
from tests.support.database import new_token, short_lived_engine
from tests.support.factories import unique
from tests.support.paths import ROOT
from tests.support.servers import running_server

#: Requests each test sends with one token (many more than one per ``BOUND`` on any machine
#: that answers a request in under BOUND / REQUESTS seconds; see ``assert_spaced``).
REQUESTS = 6
#: Seconds any polling loop here may run before it fails.
DEADLINE = 10


@pytest.fixture
def lookups(app):
    """The times (monotonic) at which the app's engine sent a token lookup during the test
    (``testapp`` first, if any: then on the test's rolled-back connection)."""
    sent = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(connection, cursor, statement, *args):
        if statement.lstrip().startswith("SELECT") and "FROM api_tokens" in statement:
            sent.append(time.monotonic())

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def assert_spaced(times, started, ended):
    """At least one lookup, and no two of them closer than ``BOUND``: a process believes what
    it read for ``BOUND`` seconds at least (a lookup per request would put them milliseconds
    apart)."""
    assert times, "the token was never looked up"
    assert all(later - earlier >= BOUND for earlier, later in itertools.pairwise(times))
    assert len(times) <= 1 + (ended - started) / BOUND


def test_a_token_is_looked_up_once_then_remembered(testapp, app, db_url, lookups):
    client = with_token(app, new_token(db_url, unique("remembered"), ["read", "write"]))
    made, cache = time.monotonic(), app.registry["token_cache"]
    if cache.listener is not None:  # the token's creation is a change it must hear first
        cache.listener.ensure_running()  # as the first request would
        wait_for(lambda: cache.vouched_until - BOUND > made, "the listener to hear the creation")
    started = time.monotonic()
    for number in range(REQUESTS):
        client.get("/users?limit=1", status=200)
        client.post_json(
            "/users", {"username": f"rem{number}{os.getpid()}", "email": f"r{number}@x.io"}
        )
    assert_spaced(lookups, started, time.monotonic())


def test_an_unknown_token_is_remembered_briefly_too(app, lookups):
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer ms_" + "B" * 43})
    started = time.monotonic()
    for _ in range(REQUESTS):
        client.get("/users?limit=1", status=401)
    assert_spaced(lookups, started, time.monotonic())


def test_a_lookup_that_races_a_change_is_not_remembered():
    """A change heard while a row was being read may have come after the read: the row is
    used for that request, and read again by the next."""
    cache = TokenCache()
    reads = []

    def lookup_during_a_change():
        reads.append(1)
        cache.forget()  # what the listener does when it hears a change
        return "row as read"

    assert cache.read("key", lookup_during_a_change).row == "row as read"
    assert cache.read("key", lambda: "row read again").row == "row read again"
    assert cache.read("key", lambda: "not read").row == "row read again"  # remembered


# -- revocation, across processes ----------------------------------------------------------


def poll_until_refused(servers, secret, revoked_at):
    """Send GET /users?limit=1 with ``secret`` to each server in turn until every request sent
    ``BOUND`` seconds or more after ``revoked_at`` was refused once per server (or the
    deadline). Returns [(server index, seconds after ``revoked_at`` it was sent, status)]."""
    sent, refused_late = [], set()
    deadline = revoked_at + BOUND + DEADLINE
    while len(refused_late) < len(servers) and time.monotonic() < deadline:
        for index, server in enumerate(servers):
            at = time.monotonic() - revoked_at
            status = call(server, "GET", "/users?limit=1", headers=bearer(secret)).status
            sent.append((index, at, status))
            if status == 401 and at >= BOUND:
                refused_late.add(index)
    return sent


def test_a_revoked_token_is_refused_by_every_process_within_the_bound(db_url, tmp_path):
    """Two servers on one database both accept a token (and so remember it); the command line
    revokes it; every request sent ``BOUND`` seconds after the command returned is a 401, on
    both (the loop keeps sending until each refused one sent that late)."""
    name = unique("revoked-live")
    secret = new_token(db_url, name, ["read"])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a", db_url) as first,
        running_server(tmp_path / "b", db_url) as second,
    ):
        for server in (first, second):
            for _ in range(3):
                assert call(server, "GET", "/users?limit=1", headers=bearer(secret)).status == 200
        revoke = subprocess.run(
            [Path(sys.executable).with_name("myservice-token"), "revoke", "development.ini", name],
            env={**os.environ, "DATABASE_URL": db_url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        revoked_at = time.monotonic()
        assert revoke.returncode == 0, revoke.stderr
        sent = poll_until_refused([first, second], secret, revoked_at)

    late = [(index, at, status) for index, at, status in sent if at >= BOUND]
    assert {index for index, _, _ in late} == {0, 1}, sent
    assert all(status == 401 for _, _, status in late), sent


# -- PostgreSQL: the listener ----------------------------------------------------------------


@pytest.fixture
def postgres_cache(db_url, is_postgres):
    """A ``TokenCache`` with its listener, on an engine of its own, stopped afterwards."""
    if not is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    engine = create_engine(db_url)
    cache = TokenCache(engine)
    cache.listener.ensure_running()
    try:
        yield cache
    finally:
        engine.dispose()


def wait_for(condition, what):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"waited {DEADLINE} s for {what}")


def committed(db_url, statement):
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        connection.execute(statement)


def test_the_listener_forgets_on_a_change_but_not_on_a_use_noted(postgres_cache, db_url):
    cache = postgres_cache
    wait_for(lambda: cache.vouched_until > time.monotonic(), "the listener to vouch")
    name = unique("listened")
    new_token(db_url, name, ["read"])
    wait_for(lambda: cache.generation == 1, "the new token's notification")
    cache.read(sha256("x"), lambda: "row")
    before = cache.generation

    by_name = TOKENS.c.name == name
    committed(db_url, update(TOKENS).where(by_name).values(last_used_at=TOKENS.c.created_at))
    committed(db_url, update(TOKENS).where(by_name).values(revoked=True))
    wait_for(lambda: cache.generation > before, "the revocation's notification")

    assert cache.generation == before + 1  # the use noted (committed first) notified no one
    assert cache.entries == {}


def test_a_listener_that_loses_its_connection_stops_vouching_and_comes_back(postgres_cache, db_url):
    cache = postgres_cache
    wait_for(lambda: cache.vouched_until > time.monotonic(), "the listener to vouch")
    listener = cache.listener
    listening_since = cache.listening_since
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    wait_for(lambda: listener.losses >= 1, "the listener to notice")
    wait_for(lambda: listener.connections == 2, "the listener to connect again")
    wait_for(lambda: cache.vouched_until > time.monotonic(), "the listener to vouch again")
    # A row read before it was back may have missed a change: only ``BOUND`` for it.
    assert cache.listening_since > listening_since
