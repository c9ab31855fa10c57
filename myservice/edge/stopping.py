"""The server's main loop, and its graceful stop on SIGTERM or SIGINT (``run``).

Until a stop signal, ``run`` turns waitress's main loop and checks slow clients
(``myservice.edge.slowclients``). Then ``drain``: no new connections, the requests in flight get
until ``graceful_timeout`` to finish, and what is still running then is abandoned with the
process (a write's message that carries its COMMIT is cancelled on the way out:
``myservice.data.roundtrips``).
"""

import logging
import signal
import socket
import time
from contextlib import contextmanager, suppress

from waitress import wasyncore
from waitress.channel import HTTPChannel

from myservice.edge.server import listeners
from myservice.edge.slowclients import SlowClients

log = logging.getLogger(__name__)

#: The signals that stop the server gracefully; a second one stops the wait.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run(server, graceful_timeout, slow_clients):
    """waitress's main loop until a stop signal, then ``drain``: a bounded, graceful stop."""
    sockets = server.socket_map
    first = next(listeners(sockets))
    adj = first.adj
    timeout = min(adj.asyncore_loop_timeout, SlowClients.INTERVAL)
    with stop_signals(first.pull_trigger) as stop:
        while stop.deadline is None:
            wasyncore.loop(timeout, adj.asyncore_use_poll, sockets, count=1)
            slow_clients.check(sockets)
        stop.deadline = min(stop.deadline, time.monotonic() + graceful_timeout)
        drain(sockets, stop, adj.asyncore_use_poll, slow_clients)


class Stop:
    """When the server must be stopped by: None until a stop signal arrives; and how many."""

    deadline = None
    signals = 0


@contextmanager
def stop_signals(wake):
    """SIGTERM and SIGINT set ``Stop.deadline`` (a second one: now) and ``wake`` the main loop.

    The handler runs on the main thread between two bytecodes of the loop, so it only notes the
    signal and pulls the trigger (a byte down a pipe the loop watches), which ends the loop's
    ``select`` at once; the loop itself then stops.
    """
    stop = Stop()

    def handler(signum, frame):
        stop.deadline = time.monotonic() if stop.deadline is not None else float("inf")
        stop.signals += 1
        wake()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a forked server's (fork_server)
    try:
        yield stop
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def drain(sockets, stop, use_poll, slow_clients):
    """Stop listening, finish what is in flight until ``stop.deadline``, close the rest.

    New connections are refused from the first moment: the listening sockets are closed (their
    triggers stay open for the task threads). A connection counts as in flight while it has a
    request being received, queued or served, or a response not yet sent; the others are idle
    and closed at once. Each response from now on carries ``Connection: close``. A request still
    running at the deadline is abandoned with the process: its database connection closes, so
    its transaction is rolled back.
    """
    for listener in list(listeners(sockets)):
        listener.draining = True
        wasyncore.dispatcher.close(listener)
    busy = close_idle(sockets)
    log.info(
        "stopping: no new connections; %d in flight get up to %.0fs",
        len(busy),
        stop.deadline - time.monotonic(),
    )
    while busy and (remaining := stop.deadline - time.monotonic()) > 0:
        # A task thread pulls the trigger when it ends with its connection to close, as every
        # one does from now on (``Channel.ends_quietly``): this wakes as soon as one finishes.
        wasyncore.loop(min(remaining, SlowClients.INTERVAL), use_poll, sockets, count=1)
        slow_clients.check(sockets)  # a slow client is in flight only as long as it may be
        busy = close_idle(sockets)
    if busy:
        log.warning("exiting with %d connection(s) unfinished: out of time", len(busy))
        for channel in busy:
            # Closed for sending before the exit: on its way out the process cancels a write
            # still waiting (``roundtrips.cancel_commits_in_flight``), and the request's thread,
            # woken by the cancel, would answer 503 down a connection not yet closed. Shut
            # down, not closed: the thread may still hold the socket, and its send now fails.
            with suppress(OSError):
                channel.socket.shutdown(socket.SHUT_RDWR)
    else:
        log.info("stopped: every request in flight was answered")


def close_idle(sockets):
    """Close the connections with nothing in flight; return the others."""
    busy = []
    for channel in [d for d in sockets.values() if isinstance(d, HTTPChannel)]:
        if channel.requests or channel.request is not None or channel.total_outbufs_len:
            busy.append(channel)
        elif not channel.will_close:
            channel.handle_close()
    return busy
