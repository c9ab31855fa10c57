"""Raw HTTP on a socket, for tests about the bytes on the wire: heads written by hand, bodies
sent (or not) when the test says, the answer read as it comes, the connection's end seen."""

import contextlib
import http.client
import socket
import time

import pytest

from tests.support.client import CLIENT_TIMEOUT

#: What a server sends to invite a body announced with ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def connect(server):
    return socket.create_connection((server.host, server.port), timeout=CLIENT_TIMEOUT)


def head(method, path, *headers):
    """The head of an HTTP/1.1 request: its request line, ``Host`` and ``headers``."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def authorization(server):
    """The header line that carries the server's token."""
    return f"Authorization: Bearer {server.token}"


def read_reply(sock, method="GET"):
    """The next response on ``sock``, whole: status, headers and body."""
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response.status, response.headers, response.read()


def assert_closed(sock):
    """The server closed the connection: end of stream, or a reset for the unread body."""
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""


def ask_to_continue(sock, server, method, path, length):
    """Send the head of a JSON request of ``length`` bytes with the server's token and
    ``Expect: 100-continue``, and return what the server answers first (``CONTINUE`` when it
    invites the body: from then on the server holds the request, waiting for its body)."""
    sock.sendall(
        head(
            method,
            path,
            authorization(server),
            "Content-Type: application/json",
            f"Content-Length: {length}",
            "Expect: 100-continue",
        )
    )
    return sock.recv(len(CONTINUE), socket.MSG_WAITALL)


def wait_until_refused(server, seconds=CLIENT_TIMEOUT):
    """Wait until the server refuses new connections; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:
            pass  # queued as the listening socket closed: the next attempt tells
        time.sleep(0.02)
    pytest.fail(f"the server still accepted connections {seconds}s later")
