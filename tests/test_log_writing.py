"""Log lines in batches (production.ini): written together, never late by more than the bound,
at once for a warning or worse, and never lost when a server stops."""

import io
import logging
import signal
import uuid

import pytest

from myservice.edge.logwriting import BatchedStreamHandler
from tests.support.client import call
from tests.support.servers import running_gunicorn, running_production_server
from tests.support.waiting import eventually

#: Seconds the tests' servers and handlers keep lines when a test proves they are written by
#: something other than the time passing.
NEVER = 3600


class CountedWrites(io.StringIO):
    """A text stream that counts the calls that wrote to it."""

    writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logger():
    """A logger of the test's own; the handlers a test adds are closed at the end."""
    made = logging.getLogger(f"tests.logwriting.{uuid.uuid4().hex}")
    made.propagate = False
    made.setLevel(logging.INFO)
    yield made
    for handler in made.handlers:
        if isinstance(handler, BatchedStreamHandler):
            handler.close()


def batched(logger, **options):
    """A ``BatchedStreamHandler`` on ``logger``, writing to a ``CountedWrites`` stream."""
    handler = BatchedStreamHandler(CountedWrites(), **options)
    logger.addHandler(handler)
    return handler


def test_lines_logged_together_are_written_in_one_call(logger):
    handler = batched(logger, seconds=NEVER)
    stream = handler.stream

    for number in range(50):
        logger.info("line %d", number)
    assert stream.getvalue() == ""
    handler.flush()

    assert stream.getvalue().splitlines() == [f"line {number}" for number in range(50)]
    assert stream.writes == 1


def test_a_line_is_written_within_the_bound_with_nothing_logged_after_it(logger):
    stream = batched(logger, seconds=0.05).stream

    logger.info("alone")

    eventually(lambda: stream.getvalue() == "alone\n", "the line to be written")


def test_a_warning_is_written_at_once_with_the_lines_before_it(logger):
    stream = batched(logger, seconds=NEVER).stream

    logger.info("before")
    logger.warning("the warning")

    assert stream.getvalue().splitlines() == ["before", "the warning"]


def test_lines_past_the_capacity_are_written_at_once(logger):
    stream = batched(logger, seconds=NEVER, capacity=100).stream

    for number in range(20):  # 7 or 8 characters each, with the newline
        logger.info("line %d", number)

    written = stream.getvalue().splitlines()
    assert 100 // 8 <= len(written) < 20
    assert written == [f"line {number}" for number in range(len(written))]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_server_process_writes_its_access_line_while_nothing_else_happens(
    db_url, token, tmp_path, processes
):
    """production.ini as shipped; with 2 processes the line is a forked child's, whose writer
    thread is its own (a fork copies no thread)."""
    request_id = f"idle-{uuid.uuid4().hex}"
    overrides = {"processes": str(processes)}
    with running_production_server(tmp_path, db_url, overrides, token) as server:
        assert call(server, "GET", "/users", headers={"X-Request-ID": request_id}).status == 200

        eventually(
            lambda: any(request_id in line for line in server.log_lines()),
            "the request's access line",
        )


def test_a_gunicorn_worker_writes_its_access_line_while_nothing_else_happens(
    db_url, token, tmp_path
):
    """gunicorn's master logs before it forks its workers: each worker writes its own lines,
    with a writer thread of its own, not its parent's pending ones."""
    request_id = f"worker-{uuid.uuid4().hex}"
    with running_gunicorn(tmp_path, db_url, workers=2, token=token) as server:
        assert call(server, "GET", "/users", headers={"X-Request-ID": request_id}).status == 200

        eventually(
            lambda: any(request_id in line for line in server.log_lines()),
            "the request's access line",
        )


@pytest.mark.parametrize("processes", [1, 2])
def test_a_server_that_stops_writes_the_lines_it_still_kept(db_url, token, tmp_path, processes):
    request_id = f"kept-{uuid.uuid4().hex}"
    overrides = {"processes": str(processes), "kwargs": f'{{"seconds": {NEVER}}}'}
    with running_production_server(tmp_path, db_url, overrides, token) as server:
        assert call(server, "GET", "/users", headers={"X-Request-ID": request_id}).status == 200
        assert not any(request_id in line for line in server.log_lines())

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0

    [line] = [line for line in server.log_lines() if request_id in line]
    assert '"status":200' in line
