"""Logging in batches, off the serving thread: lines written, and access records logged, a
fraction of a second at a time.

``logging.StreamHandler`` writes and flushes each line as it comes: a system call per line,
made by the thread serving the request, which gives up the interpreter lock for it and then
waits to get it back from the other threads. Under load that was 5% of what a process serves
(docs/performance.md). ``BatchedStreamHandler`` keeps the formatted lines and writes them in
one call:

- at most ``seconds`` after the first of them was logged;
- at once for a record of ``flush_level`` (WARNING) or worse, with the lines before it, so an
  error is never late;
- when they pass ``capacity`` characters;
- when logging shuts down (at exit, ``logging.shutdown``; a forked server process calls it
  before it ends).

Lines are formatted when logged, by the thread that logs them (a formatter stamps the request
id of the thread's request). A process killed outright (SIGKILL) loses the lines of its last
``seconds``. Named as ``class`` in production.ini's ``[handler_console]``.

``DeferredRecords`` goes one step further for records whose facts are all known when they are
queued (the access line's: its request id, time and thread): the serving thread only queues the
facts, and a thread of its own makes each record and hands it to the logger, ``seconds`` at a
time. Made and handled one at a time by each serving thread, between requests, the record's,
logger's, formatter's and handler's code came back cold each time: served, the access line cost
6% of a process's GET throughput, ten times what it costs in a loop; in batches it costs what
the loop does (docs/performance.md). The logger, its handlers and their formatters are still
the ini's: only the thread and the moment change. ``flush_deferred`` hands over what is queued:
at exit, and in a forked server process before it calls ``logging.shutdown``.

Both wait with a ``Batches`` thread, which sleeps while nothing is pending.
"""

import atexit
import collections
import logging
import os
import threading
import time
import weakref

from myservice.data.processthread import PerProcessThread


class Batches(PerProcessThread):
    """Calls ``flush`` at most ``seconds`` after the first ``wake`` since its last call, from
    a thread of its own that sleeps while nothing is pending. The thread starts with the first
    ``wake`` of each process (``PerProcessThread``: a forked child starts its own).
    ``failed(error)`` is told of an exception ``flush`` raised; the thread goes on."""

    thread_name = "log-writer"

    def __init__(self, flush, seconds, failed):
        super().__init__()
        self.flush = flush
        self.seconds = float(seconds)
        self.failed = failed
        self.pending = threading.Event()

    def starting(self):
        """In a process that starts the thread: nothing pending yet (a forked child's copy of
        its parent's event may be set)."""
        self.pending = threading.Event()

    def wake(self):
        """Have ``flush`` called within ``seconds`` (nothing to do when it is already due)."""
        self.ensure_running()
        if not self.pending.is_set():
            self.pending.set()

    def run(self):
        while True:
            self.pending.wait()
            time.sleep(self.seconds)
            self.pending.clear()  # before flush: what comes during it wakes the next round
            try:
                self.flush()
            except Exception as error:
                self.failed(error)


class BatchedStreamHandler(logging.StreamHandler):
    """A ``StreamHandler`` that writes its lines in batches (see the module)."""

    def __init__(self, stream=None, seconds=0.2, flush_level=logging.WARNING, capacity=65536):
        super().__init__(stream)
        self.seconds = float(seconds)
        if isinstance(flush_level, str):  # as an ini's kwargs may name it
            flush_level = logging.getLevelNamesMapping()[flush_level]
        self.flush_level = flush_level
        self.capacity = int(capacity)
        self.batches = Batches(self.flush, self.seconds, self._not_written)
        self._start_afresh()
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self):
        """No lines: at start, and in a forked child, whose parent writes what was pending."""
        self.lines = []
        self.size = 0

    def emit(self, record):  # ``Handler.handle`` holds ``self.lock``
        try:
            line = self.format(record) + self.terminator
            self.lines.append(line)
            self.size += len(line)
            if record.levelno >= self.flush_level or self.size >= self.capacity:
                self.flush()
            elif len(self.lines) == 1:
                self.batches.wake()
        except RecursionError:  # as StreamHandler.emit (CPython issue 36272)
            raise
        except Exception:
            self.handleError(record)

    def flush(self):
        """Write the pending lines in one call, then flush the stream."""
        with self.lock:  # an RLock: ``emit`` holds it already
            if self.lines:
                batch = "".join(self.lines)
                self.lines.clear()
                self.size = 0
                self.stream.write(batch)
            super().flush()

    def _not_written(self, error):
        # As logging does when a handler cannot write: say so on stderr, go on.
        self.handleError(logging.makeLogRecord({"msg": "log lines not written"}))


#: Every ``DeferredRecords`` of the process, for ``flush_deferred``.
_deferred = weakref.WeakSet()


class DeferredRecords:
    """Records that ``logger`` handles in batches, from a thread of their own (see the module).

    ``add(*facts)`` queues what a record is made of: everything that must be taken at that
    moment (its time, its thread) is among the facts. Within ``seconds``, the thread makes each
    record, ``make_record(*facts)``, and has the logger handle it, in the order they were added;
    its handlers then write the lines as they do any other (a ``BatchedStreamHandler`` within
    its own ``seconds``).
    """

    def __init__(self, logger, make_record, seconds=0.1):
        self.logger = logger
        self.make_record = make_record
        self.batches = Batches(self.flush, seconds, self._not_logged)
        self._start_afresh()
        os.register_at_fork(after_in_child=self._start_afresh)
        _deferred.add(self)

    def _start_afresh(self):
        """An empty queue, and a hand-over lock that no thread holds: at start, and in a forked
        child, whose parent logs what it had queued (and whose thread may have held the lock)."""
        self.records = collections.deque()
        self.flushing = threading.Lock()  # one hand-over at a time (the thread's, or at exit)

    def add(self, *facts):
        self.records.append(facts)
        self.batches.wake()

    def flush(self):
        """Make every queued record and hand it to the logger now, in order. A flush at exit
        waits for a batch the thread is handing over, so that none of it reaches the handlers
        after ``logging.shutdown`` has written their last lines."""
        records, make, handle = self.records, self.make_record, self.logger.handle
        with self.flushing:
            while records:
                handle(make(*records.popleft()))

    def _not_logged(self, error):
        message = f"{self.logger.name}: records not logged: {error!r}"
        logging.lastResort.handle(logging.makeLogRecord({"msg": message, "levelno": logging.ERROR}))


@atexit.register  # registered after logging's own shutdown, so run before it
def flush_deferred():
    """Hand every ``DeferredRecords``' queue to its logger (at exit, and before a forked server
    process calls ``logging.shutdown``)."""
    for deferred in list(_deferred):
        deferred.flush()
