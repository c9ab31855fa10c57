"""The real server for tests: ``pserve`` in a subprocess, spoken to over real HTTP.

The server runs ``development.ini`` (or ``production.ini``) unchanged but for its port (and any
``overrides``), on the database the test names (``DATABASE_URL``).
"""

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.server import BenchError, free_port, venv_command, write_ini
from bench.server import running_server as bench_server
from tests.conftest import DEVELOPMENT_INI, ROOT, bearer

PRODUCTION_INI = ROOT / "production.ini"

#: bench/bare_app.py (a WSGI app without Pyramid) served by myservice.edge.server.
BARE_INI = ROOT / "bench" / "bare.ini"

#: Seconds the server gets to answer GET /health after it is started.
STARTUP_DEADLINE = 20

#: Seconds the client waits for any answer: a request that hangs fails with a timeout.
CLIENT_TIMEOUT = 10

#: The API's rule for an X-Request-ID the server echoes (and so for one it generates).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# -- the server -------------------------------------------------------------------------------


#: A token in the shape the server accepts that no database holds: a server whose database is
#: away must look it up, and so answer 503, not 401.
UNKNOWN_TOKEN = "ms_" + "A" * 43


@dataclass
class Server:
    host: str
    port: int
    log: Path  # the server's stderr: every log line
    token: str  # what ``call`` sends as ``Authorization: Bearer``
    process: subprocess.Popen  # pserve, or gunicorn's master

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def log_lines(self):
        return self.log.read_text(encoding="utf-8").splitlines()


@contextmanager
def running_server(directory, database_url, overrides=None, token=UNKNOWN_TOKEN):
    """``pserve`` of development.ini on a free port of 127.0.0.1, until the block ends.

    The benchmark's launcher: only the ``listen`` line of the ini differs (and the lines named
    in ``overrides``), the log goes to a file, GET /health must answer within the deadline, and
    the server is always stopped.
    """
    env = {**os.environ, "DATABASE_URL": database_url}
    with _pserve(DEVELOPMENT_INI, directory, env, overrides, token) as server:
        yield server


@contextmanager
def running_production_server(directory, database_url, overrides=None, token=UNKNOWN_TOKEN):
    """``pserve`` of production.ini, like ``running_server``, with the secret it demands."""
    env = {**os.environ, "DATABASE_URL": database_url, "MYSERVICE_SECRET": "s" * 48}
    with _pserve(PRODUCTION_INI, directory, env, overrides, token) as server:
        yield server


@contextmanager
def running_gunicorn(directory, database_url, workers, token=UNKNOWN_TOKEN):
    """``gunicorn --paste production.ini`` (with gunicorn.conf.py) with ``workers`` processes on
    a free port, like ``running_server``."""
    env = {**os.environ, "DATABASE_URL": database_url, "MYSERVICE_SECRET": "s" * 48}

    def gunicorn(ini, port):
        return [
            *(venv_command("gunicorn"), "--config", str(ROOT / "gunicorn.conf.py")),
            *("--paste", str(ini), "--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
        ]

    with _pserve(PRODUCTION_INI, directory, env, token=token, command=gunicorn) as server:
        yield server


@contextmanager
def running_bare_server(directory, overrides=None):
    """``pserve`` of bench/bare.ini (no Pyramid, no database) on a free port, like the above."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # pserve runs in ``directory``
    with _pserve(BARE_INI, directory, env, overrides) as server:
        yield server


@contextmanager
def _pserve(source, directory, env, overrides=None, token=UNKNOWN_TOKEN, command=None):
    """``source`` served on a free port: by pserve, or by ``command(ini, port)``."""
    port = free_port()
    ini = write_ini(source, directory, port, overrides)
    command = command and command(ini, port)
    try:
        with bench_server(ini, env, port, STARTUP_DEADLINE, command) as started:
            yield Server("127.0.0.1", port, started.log_path, token, started.process)
    except BenchError as error:
        pytest.fail(str(error))


# -- the client -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(server, method, path, body=None, headers=(), timeout=CLIENT_TIMEOUT):
    """One request on a new connection, with the server's token unless ``headers`` name an
    ``Authorization`` (None: none at all); ``body`` is sent as JSON (bytes: as they are)."""
    headers = {**bearer(server.token), **dict(headers)}
    if headers["Authorization"] is None:
        del headers["Authorization"]
    if body is not None:
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


# -- raw HTTP, for tests about the bytes on the wire --------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def connect(server):
    return socket.create_connection((server.host, server.port), timeout=CLIENT_TIMEOUT)


def head(method, path, *headers):
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def read_reply(sock, method="GET"):
    """The next response on ``sock``, whole: status, headers and body."""
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response.status, response.headers, response.read()


def ask_to_continue(sock, server, method, path, length):
    """Send the head of a JSON request of ``length`` bytes with the server's token and
    ``Expect: 100-continue``, and return what the server answers first (``CONTINUE`` when it
    invites the body: from then on the server holds the request, waiting for its body)."""
    sock.sendall(
        head(
            method,
            path,
            f"Authorization: Bearer {server.token}",
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


def concurrently(function, arguments):
    """``function`` of each argument, each in its own thread, all released at the same moment."""
    start = threading.Barrier(len(arguments))

    def run(argument):
        start.wait(timeout=CLIENT_TIMEOUT)
        return function(argument)

    with ThreadPoolExecutor(max_workers=len(arguments)) as pool:
        return list(pool.map(run, arguments))


def unique(prefix):
    """A name nobody has taken yet (a module's server keeps what it commits)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_problem(reply, status):
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status
    assert problem["type"] and problem["title"]
    return problem
