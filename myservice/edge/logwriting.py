"""Log lines written in batches: one write for the lines of a fraction of a second.

``logging.StreamHandler`` writes and flushes each line as it comes: a system call per line,
made by the thread serving the request, which gives up the interpreter lock for it and then
waits to get it back from the other threads. Under load that was 5% of what a process serves
(docs/performance.md). ``BatchedStreamHandler`` keeps the formatted lines and writes them in
one call:

- at most ``seconds`` after the first of them was logged (a thread of its own waits that long
  once a line is pending, and sleeps while none is);
- at once for a record of ``flush_level`` (WARNING) or worse, with the lines before it, so an
  error is never late;
- when they pass ``capacity`` characters;
- when logging shuts down (at exit, ``logging.shutdown``; a forked server process calls it
  before it ends).

Lines are formatted when logged, by the thread that logs them (a formatter stamps the request
id of the thread's request). A process killed outright (SIGKILL) loses the lines of its last
``seconds``. Named as ``class`` in production.ini's ``[handler_console]``.
"""

import logging
import os
import threading
import time


class BatchedStreamHandler(logging.StreamHandler):
    """A ``StreamHandler`` that writes its lines in batches (see the module)."""

    def __init__(self, stream=None, seconds=0.2, flush_level=logging.WARNING, capacity=65536):
        super().__init__(stream)
        self.seconds = float(seconds)
        if isinstance(flush_level, str):  # as an ini's kwargs may name it
            flush_level = logging.getLevelNamesMapping()[flush_level]
        self.flush_level = flush_level
        self.capacity = int(capacity)
        self._start_afresh()
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self):
        """No lines and no writer thread: at start, and in a forked child, whose parent writes
        what was pending and whose copy of the writer thread does not run."""
        self.lines = []
        self.size = 0
        self.pending = threading.Event()
        self.writer = None

    def emit(self, record):  # ``Handler.handle`` holds ``self.lock``
        try:
            line = self.format(record) + self.terminator
            self.lines.append(line)
            self.size += len(line)
            if record.levelno >= self.flush_level or self.size >= self.capacity:
                self.flush()
            elif len(self.lines) == 1:
                self._wake_writer()
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

    def _wake_writer(self):
        if self.writer is None:
            self.writer = threading.Thread(target=self._write_batches, name="log-writer")
            self.writer.daemon = True
            self.writer.start()
        self.pending.set()

    def _write_batches(self):
        """The writer thread: once a line is pending, wait ``seconds``, then write them all."""
        while True:
            self.pending.wait()
            time.sleep(self.seconds)
            with self.lock:
                self.pending.clear()
                try:
                    self.flush()
                except Exception:
                    # As logging does when a handler cannot write: say so on stderr, go on.
                    self.handleError(logging.makeLogRecord({"msg": "log lines not written"}))
