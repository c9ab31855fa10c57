"""The multi-process alternative: ``gunicorn --paste production.ini``, and the engine across fork.

gunicorn runs with gunicorn.conf.py as shipped (gthread workers, the app preloaded in the master
and then forked) and two workers, on the session's database, over real sockets.
"""

import json
import os
import signal
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from myservice.data.engine import make_engine
from tests.support.client import CLIENT_TIMEOUT, call
from tests.support.factories import user_body
from tests.support.raw_http import (
    CONTINUE,
    ask_to_continue,
    authorization,
    connect,
    head,
    read_reply,
    stream_until_answered,
)
from tests.support.servers import running_gunicorn
from tests.support.waiting import eventually


@pytest.fixture
def gunicorn(db_url, token, tmp_path, empty_tables):
    with running_gunicorn(tmp_path, db_url, workers=2, token=token) as server:
        yield server


def worker_pids(server, count):
    """The pids of the master's ``count`` workers, once it has forked them all."""
    children = f"/proc/{server.process.pid}/task/{server.process.pid}/children"
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:
        with open(children) as listing:
            pids = [int(pid) for pid in listing.read().split()]
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not fork {count} workers")


@contextmanager
def paused(pid):
    """The process stopped (SIGSTOP) for the block: it accepts no connection meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def has_exited(pid):
    """The process has ended (a zombie until its parent reaps it, then gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until_one_has_exited(pids):
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:
        if any(has_exited(pid) for pid in pids):
            return
        time.sleep(0.02)
    pytest.fail(f"no worker of {pids} exited")


def test_each_of_two_gunicorn_workers_serves_the_api(gunicorn):
    first, second = worker_pids(gunicorn, 2)

    with paused(second):  # only the first can take the connection
        created = call(gunicorn, "POST", "/users", user_body())
    with paused(first):  # only the second can
        fetched = call(gunicorn, "GET", f"/users/{created.json()['id']}")

    assert created.status == 201, created.body
    assert fetched.status == 200, fetched.body
    assert fetched.json() == created.json()
    eventually(  # an INFO line: written within production.ini's bound (edge.logwriting)
        lambda: any("2 workers x 4 threads" in line for line in gunicorn.log_lines()),
        "gunicorn's line on its workers",
    )


def test_gunicorn_answers_a_request_in_flight_at_sigterm_and_exits(gunicorn):
    pids = worker_pids(gunicorn, 2)
    for other in pids:  # each worker alone answers once, so both have booted: one still booting
        with paused(other):  # would miss the SIGTERM, and gunicorn wait for graceful_timeout
            assert call(gunicorn, "GET", "/health").status == 200
    body = json.dumps(user_body()).encode()
    with connect(gunicorn) as sock:
        assert ask_to_continue(sock, gunicorn, "POST", "/users", len(body)) == CONTINUE

        gunicorn.process.send_signal(signal.SIGTERM)
        wait_until_one_has_exited(pids)  # the idle one: the signal has reached them
        sock.sendall(body)
        status, _, reply = read_reply(sock, "POST")

    assert status == 201, reply
    assert gunicorn.process.wait(timeout=CLIENT_TIMEOUT) == 0


# -- bodies of unknown length ------------------------------------------------------------------

#: production.ini's myservice.max_body_bytes: gunicorn itself enforces no limit on a body.
LIMIT = 1024 * 1024
CHUNK = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
CHUNKED_JSON = ("Content-Type: application/json", "Transfer-Encoding: chunked")


def test_gunicorn_answers_a_chunked_body_that_never_ends_once_it_passes_the_limit(gunicorn):
    """gunicorn hands the app a chunked body of unknown length. The app reads at most the
    limit and one byte, then answers (401: no token was sent), though the body never ends.
    Reading it whole for pyramid_retry, it waited for the rest, and never answered."""
    with connect(gunicorn) as sock:
        sock.sendall(head("POST", "/users", *CHUNKED_JSON))
        stream_until_answered(sock, CHUNK, 4 * LIMIT)  # never the last chunk

        status, _, body = read_reply(sock, "POST")

    assert status == 401, body


def test_gunicorn_serves_a_chunked_body_within_the_limit(gunicorn):
    body = json.dumps(user_body()).encode()
    with connect(gunicorn) as sock:
        sock.sendall(
            head("POST", "/users", authorization(gunicorn), *CHUNKED_JSON)
            + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        )

        status, _, reply = read_reply(sock, "POST")

    assert status == 201, reply


def test_a_dead_workers_live_gauge_leaves_the_sum_a_scrape_shows(
    db_url, token, tmp_path, monkeypatch, empty_tables
):
    """gunicorn.conf.py's child_exit: with PROMETHEUS_MULTIPROC_DIR, the checked-out gauge of a
    worker that is gone (its file there) no longer counts; the living worker's does."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))

    def live_gauge(pid):
        return (metrics / f"gauge_livesum_{pid}.db").exists()

    with running_gunicorn(tmp_path, db_url, workers=2, token=token) as server:
        first, second = worker_pids(server, 2)
        for other in (second, first):  # each worker alone checks out a connection once
            with paused(other):
                assert call(server, "GET", "/users?limit=1").status == 200
        assert live_gauge(first) and live_gauge(second)

        os.kill(first, signal.SIGKILL)  # gunicorn reaps it and forks another
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while live_gauge(first) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert not live_gauge(first), "the dead worker's gauge still counts"
        assert live_gauge(second)


# -- the engine across fork -------------------------------------------------------------------


def test_a_forked_child_gets_an_empty_pool_and_the_parent_keeps_its_connection(db_url):
    engine = make_engine({"sqlalchemy.url": db_url})
    try:
        with engine.connect() as connection:
            pooled = connection.connection.dbapi_connection
        assert engine.pool.checkedin() == 1

        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report on the pipe, and leave without the parent's cleanup
            try:
                report = {"pooled_at_fork": engine.pool.checkedin()}
                with engine.connect() as connection:
                    report["answered"] = connection.execute(select(1)).scalar()
                    report["own_connection"] = connection.connection.dbapi_connection is not pooled
                os.write(write_end, json.dumps(report).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = json.loads(pipe.read() or "{}")
        os.waitpid(pid, 0)

        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is pooled
            assert connection.execute(select(1)).scalar() == 1  # still alive in the parent
    finally:
        engine.dispose()
    assert report == {"pooled_at_fork": 0, "answered": 1, "own_connection": True}
