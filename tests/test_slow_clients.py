"""Slow clients: a request's head must arrive in time and its body at a pace, or the server
answers 408 and closes the connection, so that clients trickling bytes cannot hold every
connection the server takes, nor a graceful stop.

Each test starts its own server (development.ini) with short bounds: ``request_head_timeout``
2 s, ``request_body_timeout`` 2 s and ``request_body_min_rate`` 1000 bytes/s. Clients trickle a
byte every ``PACE`` seconds from threads, for at most ``TRICKLE_BYTES`` bytes, so every loop
ends; what is asserted is who was answered, never how fast.
"""

import select
import signal
import threading
from contextlib import ExitStack, closing

import pytest

from tests.support.client import CLIENT_TIMEOUT, Reply, call
from tests.support.problems import assert_problem
from tests.support.raw_http import assert_closed, authorization, connect, head, read_reply
from tests.support.servers import running_server

#: The bounds of the tests' servers.
BOUNDS = {
    "request_head_timeout": "2",
    "request_body_timeout": "2",
    "request_body_min_rate": "1000",
}

#: Seconds between two bytes of a trickling client, and the most bytes one sends: it would
#: trickle for 30 s, three times as long as a client here waits for an answer.
PACE = 0.2
TRICKLE_BYTES = 150


@pytest.fixture
def start(db_url, token, tmp_path):
    with ExitStack() as servers:

        def started(**overrides):
            return servers.enter_context(
                running_server(tmp_path, db_url, {**BOUNDS, **overrides}, token)
            )

        yield started


class Trickler:
    """A client that sends ``opening`` at once, then (from a thread) one byte every ``PACE``
    seconds, until the server answers or closes, ``stop`` is set, or ``TRICKLE_BYTES`` bytes."""

    def __init__(self, server, opening):
        self.sock = connect(server)
        self.sock.sendall(opening)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.trickle, daemon=True)
        self.thread.start()

    def trickle(self):
        try:
            for _ in range(TRICKLE_BYTES):
                if self.stop.wait(PACE) or select.select([self.sock], [], [], 0)[0]:
                    return
                self.sock.sendall(b"X")
        except OSError:
            return  # the server closed the connection

    def reply(self):
        """The server's answer: (status, headers, body)."""
        self.stop.set()
        self.thread.join(CLIENT_TIMEOUT)
        return read_reply(self.sock)

    def close(self):
        self.stop.set()
        self.thread.join(CLIENT_TIMEOUT)
        self.sock.close()


#: A head that never ends: header lines trickled one byte at a time.
ENDLESS_HEAD = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


def test_clients_trickling_their_heads_cannot_keep_another_client_from_being_answered(start):
    """Twelve clients trickle heads that never end at a server that takes 8 connections at
    once (connection_limit 10, less its listener and trigger): without a bound they held
    every connection, and the call below waited in the listen queue until it timed out."""
    server = start(connection_limit="10")
    with ExitStack() as clients:
        tricklers = [
            clients.enter_context(closing(Trickler(server, ENDLESS_HEAD))) for _ in range(12)
        ]

        reply = call(server, "GET", "/health")

        assert reply.status == 200, reply.body
        for trickler in tricklers:
            status, headers, body = trickler.reply()
            problem = assert_problem(Reply(status, headers, body), 408)
            assert problem["detail"] == "the request head did not arrive within 2 s"
            assert_closed(trickler.sock)


def test_a_body_trickled_below_the_minimum_rate_is_408_and_closed(start, db_url):
    server = start()
    opening = head(
        "POST",
        "/users",
        authorization(server),
        "Content-Type: application/json",
        "Content-Length: 10000",
    )
    with closing(Trickler(server, opening)) as trickler:
        status, headers, body = trickler.reply()

        problem = assert_problem(Reply(status, headers, body), 408)
        assert problem["detail"] == "the body arrived slower than 1000 bytes/s"
        assert_closed(trickler.sock)


def test_a_connection_that_never_sends_a_request_is_closed(start):
    server = start()
    with connect(server) as silent:
        assert silent.recv(1) == b""  # closed by the server, not by the client's timeout


def test_a_head_and_a_body_that_keep_to_the_bounds_are_served(start):
    """A head in two parts and a body that pauses, each within its 2 s, are a request like any
    other."""
    server = start()
    body = b'{"username": "patient", "email": "patient@example.org"}'
    opening = head(
        "POST",
        "/users",
        authorization(server),
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )
    pause = threading.Event()
    with connect(server) as sock:
        sock.sendall(opening[:20])
        pause.wait(0.5)
        sock.sendall(opening[20:] + body[:3])
        pause.wait(0.5)
        sock.sendall(body[3:])

        status, _, reply = read_reply(sock, "POST")

    assert status == 201, reply


def test_a_trickling_client_does_not_hold_a_graceful_stop(start):
    """graceful_timeout is 60 s; the trickling request is cut after its head's 2 s, and the
    server exits having answered everything in flight."""
    server = start(graceful_timeout="60")
    with closing(Trickler(server, ENDLESS_HEAD)) as trickler:
        assert_problem(call(server, "GET", "/nowhere"), 404)  # the server is serving

        server.process.send_signal(signal.SIGTERM)

        assert server.process.wait(timeout=3 * CLIENT_TIMEOUT) == 0  # long before 60 s
        status, headers, body = trickler.reply()
        assert_problem(Reply(status, headers, body), 408)
    assert any(
        "stopped: every request in flight was answered" in line for line in server.log_lines()
    )
