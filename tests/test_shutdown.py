"""SIGTERM: the server stops listening, finishes what is in flight, and exits within its bound.

Each test starts its own server (``pserve`` of development.ini) and stops it with a real signal.
A request is *in flight* when the server holds it: its head was read (the server invited the
body with 100 Continue), or its transaction waits on a lock the test holds.
"""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, text

from myservice.data.models import User
from tests.support.client import CLIENT_TIMEOUT, call
from tests.support.database import short_lived_engine
from tests.support.factories import user_body
from tests.support.locks import LockWait
from tests.support.raw_http import (
    CONTINUE,
    ask_to_continue,
    connect,
    read_reply,
    wait_until_refused,
)
from tests.support.servers import running_server

#: graceful_timeout of the servers here, unless a test names another.
GRACEFUL = 10


@pytest.fixture
def start(db_url, token, tmp_path, empty_tables):
    """Start the test's server with ``graceful_timeout`` seconds (stopped at the end if the test
    has not stopped it); every row it committed is deleted afterwards."""
    with ExitStack() as servers:

        def started(graceful_timeout=GRACEFUL, processes=1):
            overrides = {
                "graceful_timeout": str(graceful_timeout),
                "processes": str(processes),
                # A write may wait on the test's row lock for longer than the shutdown lasts.
                "myservice.lock_timeout_ms": "0",
                "myservice.statement_timeout_ms": "60000",
            }
            return servers.enter_context(running_server(tmp_path, db_url, overrides, token))

        yield started


def new_user_body():
    body = user_body()
    return body["username"], json.dumps(body).encode()


def stored_usernames(db_url, *names):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        query = select(User.username).where(User.username.in_(names))
        return set(connection.execute(query).scalars())


def exit_status_within(server, seconds):
    """The server's exit status; fails when it is still running ``seconds`` later."""
    return server.process.wait(timeout=seconds)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_request_in_flight_at_sigterm_is_answered_and_committed_while_new_ones_are_refused(
    start, db_url, processes
):
    server = start(processes=processes)
    name, body = new_user_body()
    with connect(server) as sock:
        assert ask_to_continue(sock, server, "POST", "/users", len(body)) == CONTINUE

        server.process.send_signal(signal.SIGTERM)
        wait_until_refused(server)  # while the request above still waits for its body
        sock.sendall(body)
        status, headers, reply = read_reply(sock, "POST")

    assert status == 201, reply
    assert json.loads(reply)["username"] == name
    assert headers["Connection"] == "close"
    assert stored_usernames(db_url, name) == {name}
    assert exit_status_within(server, GRACEFUL) == 0
    assert any(
        "stopped: every request in flight was answered" in line for line in server.log_lines()
    )


@pytest.mark.parametrize("processes", [1, 2])
def test_idle_keep_alive_connections_do_not_hold_the_server_up(start, processes):
    server = start(graceful_timeout=60, processes=processes)
    with connect(server) as idle:
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, _ = read_reply(idle)
        assert status == 200
        assert "Connection" not in headers  # kept alive

        server.process.send_signal(signal.SIGTERM)

        assert exit_status_within(server, CLIENT_TIMEOUT) == 0  # long before 60 s
        assert idle.recv(1) == b""  # closed by the server


def children(server):
    """The pids of the server's child processes (``processes = N``), from /proc."""
    pid = server.process.pid
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_for_children(server, count, gone=None):
    """The server's ``count`` children once ``gone`` is not among them; fails after a while."""
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:
        found = children(server)
        if len(found) == count and gone not in found:
            return found
        time.sleep(0.05)
    pytest.fail(f"the server has {len(children(server))} processes, not {count}")


def test_processes_n_serves_from_n_processes_and_replaces_one_that_dies(start):
    server = start(processes=2)
    first = wait_for_children(server, 2)
    assert all(call(server, "GET", "/health").status == 200 for _ in range(20))

    dead = min(first)
    os.kill(dead, signal.SIGKILL)
    replaced = wait_for_children(server, 2, gone=dead)

    assert dead not in replaced and len(replaced & first) == 1
    assert all(call(server, "GET", "/users?limit=1").status == 200 for _ in range(20))
    server.process.send_signal(signal.SIGTERM)
    assert exit_status_within(server, GRACEFUL) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)


def test_the_server_exits_at_graceful_timeout_when_a_request_never_completes(start):
    graceful = 1
    server = start(graceful)
    _, body = new_user_body()
    with connect(server) as stalled:
        assert ask_to_continue(stalled, server, "POST", "/users", len(body)) == CONTINUE

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status = exit_status_within(server, graceful + CLIENT_TIMEOUT)

        assert time.monotonic() - started >= graceful  # it waited for the request
        assert status == 0
        assert stalled.recv(1) == b""  # the connection ends without an answer
    log = server.log_lines()
    assert any("exiting with 1 connection(s) unfinished" in line for line in log)


# -- a transaction in flight (PostgreSQL: the test holds a row lock the request needs) --------


@contextmanager
def a_write_waiting_for_a_lock(server, connection):
    """POST /users on a thread while ``connection`` locks the row every write updates (the feed
    counter): inside the block the request waits in its transaction; at its end the lock is
    released. Yields the user's name and the request's ``Future`` (its reply, or the error the
    client met)."""
    name, body = new_user_body()
    connection.execute(text("SELECT seq FROM feed_counter FOR UPDATE"))  # begins a transaction
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            reply = pool.submit(call, server, "POST", "/users", json.loads(body))
            LockWait(connection).wait_until_waiting(reply)
            yield name, reply
        finally:
            connection.commit()  # the lock goes, and the request goes on (or is gone)


@pytest.fixture
def postgres_lock(db_url, postgres_only):
    """A connection of the test's own, to hold a PostgreSQL row lock that a server's request
    waits for (SQLite shows no other process's wait)."""
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        yield connection


def test_a_transaction_waiting_at_sigterm_commits_once_it_can(start, db_url, postgres_lock):
    server = start()
    with a_write_waiting_for_a_lock(server, postgres_lock) as (name, reply):
        server.process.send_signal(signal.SIGTERM)
        wait_until_refused(server)

    reply = reply.result(timeout=CLIENT_TIMEOUT)
    assert reply.status == 201, reply.body
    assert reply.headers["Connection"] == "close"
    assert stored_usernames(db_url, name) == {name}
    assert exit_status_within(server, GRACEFUL) == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_a_transaction_still_waiting_at_graceful_timeout_is_rolled_back(
    start, db_url, postgres_lock, processes
):
    # The write's last message holds its COMMIT already (myservice.data.roundtrips): the
    # server must cancel it as it exits, or it would commit once the lock frees.
    graceful = 1
    server = start(graceful, processes=processes)
    with a_write_waiting_for_a_lock(server, postgres_lock) as (name, reply):
        server.process.send_signal(signal.SIGTERM)
        assert exit_status_within(server, graceful + CLIENT_TIMEOUT) == 0

    error = reply.exception(timeout=CLIENT_TIMEOUT)
    assert isinstance(error, ConnectionError)  # closed without an answer
    assert stored_usernames(db_url, name) == set()  # its transaction never reached COMMIT
