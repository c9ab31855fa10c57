"""The server in several processes (``processes = N`` or ``auto`` in ``[server:main]``).

One Python process runs on one core at a time: ``serve_processes`` binds the listening sockets
once, forks ``count`` children that each serve them as one process would (``myservice.edge.server``:
``build_server`` and ``run``), and supervises them: it starts a child again that died, and
passes SIGTERM or SIGINT on for the children's graceful stop.
"""

import logging
import os
import signal
import socket
import time

from waitress.adjustments import Adjustments

from myservice.data.errors import BadSettings
from myservice.data.roundtrips import cancel_commits_in_flight
from myservice.edge.logwriting import flush_deferred
from myservice.edge.server import build_server, cannot_listen
from myservice.edge.stopping import STOP_SIGNALS, run, stop_signals

log = logging.getLogger(__name__)

#: Seconds the supervisor of several processes waits before it starts one again that died.
RESTART_DELAY = 1.0


def process_count(processes):
    """``processes`` as a number: ``auto`` is the cores this process may run on."""
    if str(processes).strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        count = int(processes)
    except ValueError:
        count = 0
    if count < 1:
        raise BadSettings(
            f"processes = {processes} in [server:main]: say how many server processes, a whole"
            " number of at least 1, or auto (one per core)"
        )
    return count


def serve_processes(app, count, graceful_timeout, settings, slow_clients):
    """``count`` processes, each serving ``app`` as one process would, on the same sockets.

    The sockets are bound here, before any process is forked, and each child builds its own
    server over them (its own threads, trigger and main loop: none survives a fork); the
    kernel hands each new connection to one of them. ``app`` was built before the fork: its
    pools give each child empty ones (``data.engine.empty_pool_after_fork``), and its threads
    start in each child with its first request. This process only supervises: it starts a
    child again that died, and at SIGTERM or SIGINT closes its copies of the sockets (so that
    once every child has closed its own, connections are refused), passes the signal on and
    waits for the children's graceful stop; at its own deadline it kills what is left.
    """
    adj = Adjustments(**settings)
    try:
        sockets = [bound_socket(info, adj.backlog) for info in adj.listen]
    except OSError as error:
        cannot_listen(settings, error)
    child_settings = {
        key: value for key, value in settings.items() if key not in ("listen", "host", "port")
    }
    child_settings["sockets"] = sockets
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        print(f"Serving on http://{host}:{port} with {count} processes", flush=True)
    children = set()
    with stop_signals(lambda: None) as stop:
        for _ in range(count):
            children.add(fork_server(app, child_settings, graceful_timeout, slow_clients))
        while stop.deadline is None:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid in children and stop.deadline is None:
                children.discard(pid)
                log.warning("server process %d exited; starting another", pid)
                time.sleep(RESTART_DELAY)
                children.add(fork_server(app, child_settings, graceful_timeout, slow_clients))
            elif not pid:
                time.sleep(0.1)
        for sock in sockets:
            sock.close()
        stop_children(children, stop, graceful_timeout)


def bound_socket(info, backlog):
    family, socktype, proto, address = info
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    return sock


def fork_server(app, settings, graceful_timeout, slow_clients):
    """A child process serving ``app`` over ``settings["sockets"]`` until it is stopped.

    The stop signals are blocked across the fork: a child stopped before it has installed its
    own handlers (``run``) would otherwise run the supervisor's copy and never stop. They are
    held until ``stop_signals`` installs the child's handlers, then delivered to them.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid
    status = 0
    try:
        run(build_server(app, **settings), graceful_timeout, slow_clients)
    except BaseException:
        log.exception("server process %d failed", os.getpid())
        status = 1
    finally:  # os._exit skips atexit: what it would do, here
        cancel_commits_in_flight()  # myservice.data.roundtrips
        flush_deferred()  # the access records still queued, then the log lines still pending
        logging.shutdown()  # (myservice.edge.logwriting)
        os._exit(status)


def stop_children(children, stop, graceful_timeout):
    """SIGTERM to each child, then wait for them (a second signal here is passed on too)."""
    signalled = 0
    deadline = time.monotonic() + graceful_timeout + 5  # the children's own bound, and a margin
    while children and time.monotonic() < deadline:
        if signalled < stop.signals:
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            signalled = stop.signals
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.discard(pid)
        else:
            time.sleep(0.05)
    for pid in children:
        log.warning("server process %d still runs at the deadline: killed", pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
