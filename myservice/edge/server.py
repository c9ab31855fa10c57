"""The server: waitress and ten small changes, started by ``myservice.edge.runner`` (the
``paste.server_runner``, egg:myservice).

``[server:main]`` takes waitress's own options (listen, threads, trusted_proxy...). Over stock
waitress 3.0.2 this server:

- stops the main loop from spinning while a task thread writes a response (``Channel``);
- has the task thread send its whole response in one call when it ends, and wakes the main
  loop only when that left it something to do (``Channel``, ``KeepAliveTask.finish``);
- refuses a body over the app's ``myservice.max_body_bytes`` while it arrives, before the app
  sees it (``max_request_body_size``), and never invites such a body with 100 Continue
  (``myservice.edge.refusals.Parser``);
- refuses a request framed by both Content-Length and Transfer-Encoding, and an HTTP/1.0
  request with a Transfer-Encoding (``Parser``);
- answers everything it refuses itself with an RFC 9457 problem document that carries an
  X-Request-ID (``refusals.ProblemTask``);
- keeps the connection open after a 204 or a 304 (``KeepAliveTask``);
- answers 408 to a request whose head or body arrives too slowly, and closes a new connection
  that sends nothing in time (``SlowClients``: ``request_head_timeout``,
  ``request_body_timeout`` and ``request_body_min_rate``, options of its own);
- warns that requests queue for a thread at most once a minute, not once per request
  (``Dispatcher``);
- stops gracefully on SIGTERM or SIGINT (``myservice.edge.stopping``): it stops listening, lets the
  requests it has begun to receive finish within ``graceful_timeout`` seconds (a
  ``[server:main]`` option of its own), answers them with ``Connection: close``, then exits;
- serves from several processes with ``processes = N`` (or ``auto``: one per core), another
  option of its own (``myservice.edge.processes``): one Python process runs on one core at a
  time.

It serves any WSGI app: without a Pyramid registry the body limit is waitress's own.
See docs/waitress-upstream.md for the two waitress behaviours fixed here.
"""

import errno
import logging
import os
import sys
import threading
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ThreadedTaskDispatcher, WSGITask

from myservice.data.errors import OperatorError
from myservice.edge.refusals import Parser, ProblemTask

log = logging.getLogger(__name__)

#: Seconds between two warnings that requests queue for a thread.
QUEUE_WARNING_SECONDS = 60

#: Bytes of a response a task thread gathers before it sends them: the head and body of a
#: usual response go out in one call when the task ends (``KeepAliveTask.finish``).
SEND_BYTES = 16 * 1024

#: The channel whose request this task thread is serving (``Channel.service``).
serving = threading.local()

#: The ``[server:main]`` options of this runner's own, which stock waitress would refuse.
OWN_OPTIONS = (
    "graceful_timeout",
    "processes",
    "request_head_timeout",
    "request_body_timeout",
    "request_body_min_rate",
)


class KeepAliveTask(WSGITask):
    """Keeps the connection open after a 204 or a 304 to an HTTP/1.1 request.

    waitress's ``build_response_header`` closes every response without a Content-Length, even
    one whose status forbids a body (so it needs no length to be framed). The base method asks
    for a close only ``if not self.close_on_finish``: setting that flag around the call skips
    exactly that rule, while ``Connection: close`` from the client still closes.
    """

    def finish(self):
        """Send the response now, from this thread, in one call when it is below ``SEND_BYTES``
        (waitress would leave it for the main loop, woken by the trigger). What the socket
        does not take (a slow reader) is left to the main loop (``Channel.service``)."""
        super().finish()
        channel = self.channel
        if channel.total_outbufs_len:
            with channel.outbuf_lock:
                channel._flush_exception(channel._flush_some, do_close=False)

    def build_response_header(self):
        if self.channel.server.draining and not self.close_on_finish:
            self.set_close_on_finish()  # the server is stopping: the client must not reuse it
        bodiless = self.status[:3] in ("204", "304") and self.version == "1.1"
        if not bodiless or self.close_on_finish:
            return super().build_response_header()
        self.close_on_finish = True
        try:
            return super().build_response_header()
        finally:
            self.close_on_finish = self.request.headers.get("CONNECTION", "").lower() == "close"


class Channel(HTTPChannel):
    """A connection whose socket the main loop polls for writing only when it can write, and
    for reading while its request is served, so that the task can end without waking it.

    waitress's task ends each request by pulling the trigger (a byte down a pipe): the main
    loop wakes, sends the response and polls the socket for the next request again, two
    system calls and a hand-over of the interpreter lock per request. Here the task sends the
    response itself (``KeepAliveTask.finish``), the socket stays polled for reading meanwhile
    (``readable``), and the trigger is pulled only when the main loop has something to do
    (``ends_quietly``): output the socket did not take, a connection to close, a request read
    ahead. About 7% of a served GET (docs/performance.md).
    """

    error_task_class = ProblemTask
    task_class = KeepAliveTask
    parser_class = Parser

    def writable(self):
        """False while a task thread holds the output lock and the output is below the watermark.

        waitress's ``writable`` is true whenever output is pending; while a task thread holds
        ``outbuf_lock`` (in ``write_soon``), ``handle_write`` cannot take it
        (``_flush_some_if_lockable``), so ``select`` returns at once and the main loop spins,
        holding the GIL the task needs. Nothing is lost by waiting: the task flushes what it
        writes itself (``write_soon``, ``KeepAliveTask.finish``), and it pulls the trigger when
        it ends with output left (``service``).
        Above ``outbuf_high_watermark`` the task waits for the main loop to drain the output
        (``_flush_outbufs_below_high_watermark``, which releases the lock), so it stays true.
        """
        if self.will_close or not self.requests or not self.total_outbufs_len:
            return super().writable()
        if self.total_outbufs_len < self.adj.send_bytes:
            return False  # the task sends it when it ends (``KeepAliveTask.finish``)
        if self.total_outbufs_len >= self.adj.outbuf_high_watermark:
            return True
        if not self.outbuf_lock.acquire(blocking=False):
            return False
        self.outbuf_lock.release()
        return True

    def readable(self):
        """waitress's rule, but for the request being served: its socket stays polled.

        waitress stops reading a connection while a request is served or output is pending,
        and must be woken to read it again. The task thread changes both without waking it
        (``ends_quietly``), so neither may stop the polling; one request read ahead (a client
        that pipelines) still does, and output pending once no task runs (a slow reader).
        """
        return not (
            self.will_close
            or self.close_when_flushed
            or len(self.requests) > 1
            or (self.total_outbufs_len and not self.requests)
        )

    def service(self):
        """waitress's, with this channel known to ``pull_trigger_unless_quiet``.

        A request whose first bytes came while this one was served was read ahead (the socket
        stays polled, ``readable``); the time its client takes counts from now on, as if it had
        been read after the response (``SlowClients``: the clock stands still meanwhile).
        """
        serving.channel = self
        try:
            super().service()
        finally:
            serving.channel = None
        read_ahead = self.request
        if read_ahead is not None:
            read_ahead.restart_clock()

    def ends_quietly(self):
        """Whether the task that served this channel ends with nothing for the main loop to do:
        the response sent, no request read ahead, the connection open and polled for reading."""
        return self.connected and not (
            self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed
        )

    def write_soon(self, data):
        """waitress's ``write_soon`` pulls the trigger while it still holds ``outbuf_lock``, so
        ``writable`` may answer no to that very wake-up. Pull it again once the lock is free
        while output waits (a slow client's full socket), so that output is not left for the
        task's next write or the main loop's timeout (``asyncore_loop_timeout``, 1 s)."""
        written = super().write_soon(data)
        if self.total_outbufs_len >= self.adj.send_bytes:
            self.server.pull_trigger()
        return written


def pull_trigger_unless_quiet(pull):
    """A listener's ``pull_trigger`` (``pull``), skipped when it is the last act of a task
    whose channel ends quietly (``Channel.ends_quietly``)."""

    def pull_trigger():
        channel = getattr(serving, "channel", None)
        if channel is None or not channel.ends_quietly():
            pull()

    return pull_trigger


class Dispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, whose warning that requests wait for a thread comes at most once
    per ``QUEUE_WARNING_SECONDS``, naming the deepest queue since the last one.

    waitress warns ``Task queue depth is N`` for every request that arrives while every thread
    is busy: under a steady load, for nearly every request, and formatting and writing that
    line cost 8% of a served GET. ``add_task`` runs on the main loop's thread only.
    """

    def __init__(self):
        super().__init__()
        self.deepest = 0
        self.warn_from = float("-inf")  # time.monotonic()

    def add_task(self, task):
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            idle = len(self.threads) - self.stop_count - self.active_count
            depth = len(self.queue) - idle
        if depth > 0:
            self.deepest = max(self.deepest, depth)
            now = time.monotonic()
            if now >= self.warn_from:
                self.queue_logger.warning(
                    "Task queue depth is %d (the deepest in %ds at most)",
                    self.deepest,
                    QUEUE_WARNING_SECONDS,
                )
                self.deepest, self.warn_from = 0, now + QUEUE_WARNING_SECONDS


def build_server(app, **settings):
    """waitress's ``create_server`` for ``app``, its connections served by ``Channel``.

    The server's ``socket_map`` holds every dispatcher: listeners, their triggers, connections.
    """
    registry = getattr(app, "registry", None)
    if registry is not None and "myservice.max_body_bytes" in registry.settings:
        # One setting for the app and the server; waitress refuses max_request_body_size itself.
        settings["max_request_body_size"] = registry.settings["myservice.max_body_bytes"] + 1
    sockets = {}
    dispatcher = Dispatcher()
    dispatcher.set_thread_count(Adjustments(**settings).threads)
    server = create_server(app, map=sockets, _dispatcher=dispatcher, **settings)
    for dispatcher in listeners(sockets):  # one per listen address
        dispatcher.channel_class = Channel
        dispatcher.draining = False
        dispatcher.pull_trigger = pull_trigger_unless_quiet(dispatcher.pull_trigger)
        # waitress 3.0.2 deprecates its option send_bytes (and warns when it is given) but its
        # channel still reads it: how much output waits before a task sends it.
        dispatcher.adj.send_bytes = SEND_BYTES
    server.socket_map = sockets
    return server


#: What to do when the listening address cannot be had, by errno.
LISTEN_ADVICE = {
    errno.EADDRINUSE: "another server (a second pserve or make run?) has it: stop that one, or"
    " change listen in [server:main]",
    errno.EACCES: "ports below 1024 need privileges: listen on a higher port",
    errno.EADDRNOTAVAIL: "this host has no such address: change listen in [server:main]",
}


def cannot_listen(settings, error):
    """Say in one line why the server cannot listen, and end the process with exit status 2.

    pserve turns a ``SystemExit`` from its server runner into exit status 0 ("Exiting ... (-v to
    see traceback)"), which a supervisor or ``make`` would take for a clean stop, and any other
    exception into a traceback. Nothing is served yet and no connection is open, so the process
    ends here, once its output is flushed.
    """
    host, port = settings.get("host", "0.0.0.0"), settings.get("port", 8080)  # waitress's defaults
    where = settings.get("listen") or f"{host}:{port}"
    reason = (error.strerror or str(error)).lower()
    advice = LISTEN_ADVICE.get(error.errno, "change listen in [server:main]")
    stop_before_serving(f"cannot listen on {where}: {reason}; {advice}")


def stop_before_serving(message):
    """End the process with ``message`` as one line and exit status 2 (see ``cannot_listen``)."""
    logging.shutdown()  # the lines logged before it first (myservice.edge.logwriting)
    print(f"myservice: {message}", file=sys.stderr, flush=True)
    os._exit(OperatorError.exit_status)


def listeners(sockets):
    """The server's listening sockets (one per ``listen`` address) among its ``sockets``."""
    return (d for d in sockets.values() if isinstance(d, BaseWSGIServer))
