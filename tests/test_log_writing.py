"""Log lines in batches (production.ini): written together, never late by more than the bound,
at once for a warning or worse, and never lost when a server stops. Access records handed to
the log in batches by a thread of their own, in order, each with its own thread and time."""

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from myservice.edge.logwriting import BatchedStreamHandler, DeferredRecords
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


class Handled(logging.Handler):
    """The records a logger handled, each with the name of the thread that handled it."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record, threading.current_thread().name))


def handled(logger):
    handler = Handled()
    logger.addHandler(handler)
    return handler.records


def deferred_records(logger, seconds):
    """Deferred records of ``logger`` made from a message and the thread that queued it."""

    def make_record(message, thread):
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
        record.threadName = thread.name
        return record

    return DeferredRecords(logger, make_record, seconds=seconds)


def test_deferred_records_are_handled_together_in_the_order_they_were_added(logger):
    records = handled(logger)
    deferred = deferred_records(logger, seconds=NEVER)

    for number in range(50):
        deferred.add(f"record {number}", threading.current_thread())
    assert records == []
    deferred.flush()

    assert [record.getMessage() for record, _ in records] == [f"record {n}" for n in range(50)]


def test_a_deferred_record_is_made_and_handled_within_the_bound_by_another_thread(logger):
    records = handled(logger)
    deferred = deferred_records(logger, seconds=0.05)

    for round_ in ("first", "second"):  # the thread sleeps between rounds, then wakes again
        deferred.add(round_, threading.current_thread())

        eventually(lambda round_=round_: round_ in [r.getMessage() for r, _ in records], round_)
    assert [thread for _, thread in records] == ["log-writer", "log-writer"]
    assert {record.threadName for record, _ in records} == {threading.current_thread().name}


def test_a_forked_child_does_not_hand_over_its_parents_deferred_records(logger):
    records = handled(logger)
    deferred = deferred_records(logger, seconds=NEVER)
    deferred.add("the parent's", threading.current_thread())

    child = os.fork()
    if child == 0:  # the child: exit status = records its flush handled
        deferred.flush()
        os._exit(len(records))
    _, status = os.waitpid(child, 0)
    deferred.flush()

    assert os.waitstatus_to_exitcode(status) == 0
    assert [record.getMessage() for record, _ in records] == ["the parent's"]


def test_a_flush_waits_for_the_batch_its_thread_is_handing_over(logger):
    """At exit ``flush_deferred`` must not return while the thread is still handing records to
    the handlers, which ``logging.shutdown`` then writes for the last time."""
    first_entered, release, entered = threading.Event(), threading.Event(), []

    def hold_the_first(record):  # a logger filter: runs before the handlers, as each is handed
        entered.append((record.getMessage(), release.is_set()))
        if record.getMessage() == "first":
            first_entered.set()
            release.wait(timeout=NEVER)
        return True

    logger.addFilter(hold_the_first)
    deferred = deferred_records(logger, seconds=0.01)
    deferred.add("first", threading.current_thread())
    deferred.add("second", threading.current_thread())
    assert first_entered.wait(timeout=20)  # the thread is handing over its batch

    flushing = threading.Thread(target=deferred.flush)
    flushing.start()
    flushing.join(timeout=0.5)  # a flush that did not wait would hand over "second" now
    release.set()
    flushing.join(timeout=20)

    assert not flushing.is_alive()
    assert entered == [("first", False), ("second", True)]


def test_records_still_deferred_at_exit_are_logged_before_logging_shuts_down(tmp_path):
    """atexit runs ``flush_deferred`` before ``logging.shutdown``, which writes the lines."""
    program = tmp_path / "program.py"
    program.write_text(
        "import logging, sys\n"
        "from myservice.edge.logwriting import BatchedStreamHandler, DeferredRecords\n"
        "logger = logging.getLogger('exiting')\n"
        f"logger.addHandler(BatchedStreamHandler(sys.stdout, seconds={NEVER}))\n"
        "make = lambda message: logger.makeRecord('exiting', 20, '', 0, message, None, None)\n"
        f"deferred = DeferredRecords(logger, make, seconds={NEVER})\n"
        "deferred.add('kept until exit')\n"
    )

    ran = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60, check=True
    )

    assert ran.stdout == "kept until exit\n"


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
