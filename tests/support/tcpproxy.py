"""A TCP proxy a test controls, to put a real database out of reach in the ways networks and
servers fail.

``TcpProxy(target)`` listens on 127.0.0.1:``port`` and forwards to ``target``, one thread per
connection. The test then:

- ``cut()``: the port refuses new connections and every open one is closed (a server that
  died, a network that resets): the client learns at once;
- ``stall()``: connections are still accepted, but not one byte moves either way, on new
  connections and open ones alike (a server frozen, a network that drops packets while the
  kernel still answers): the client hears nothing and must give up by itself;
- ``restore()``: forward again (the port accepts, stalled connections move again, as a frozen
  server does when it thaws).

Every wait is in steps of ``POLL`` seconds and every thread is joined, so a test never hangs on
the proxy and leaves no thread behind.
"""

import select
import socket
import threading

from tests.support.processes import free_port

#: Seconds the proxy's threads wait between looks at its state.
POLL = 0.05

#: Seconds a thread may take to notice a cut and close its sockets.
JOIN_TIMEOUT = 5


class TcpProxy:
    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.flowing = threading.Event()  # clear: stalled
        self.closing = threading.Event()  # set: cut, every thread closes its sockets and ends
        self.threads = []  # every thread that may be running (``lock``)
        self.lock = threading.Lock()
        self.listening = False

    def __enter__(self):
        self.restore()
        return self

    def __exit__(self, *exc_info):
        self.cut()

    def restore(self):
        """Forward again: accept on the port, and move bytes on every connection."""
        if not self.listening:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen()
            listener.settimeout(POLL)
            self.listening = True
            self.spawn(self.accept, listener)
        self.flowing.set()

    def stall(self):
        """Accept connections, but move no byte on any of them, until ``restore()``."""
        self.flowing.clear()

    def cut(self):
        """Refuse new connections and close every open one; returns once all are closed."""
        self.closing.set()
        while True:
            with self.lock:  # the accept thread may still be adding one
                if not self.threads:
                    break
                thread = self.threads.pop()
            thread.join(timeout=JOIN_TIMEOUT)
            assert not thread.is_alive(), "a proxy thread did not stop"
        self.closing.clear()
        self.listening = False

    # -- the threads ------------------------------------------------------------------------

    def spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads = [running for running in self.threads if running.is_alive()]
            thread.start()
            self.threads.append(thread)

    def waited_for_flow(self):
        """Wait while stalled; False when cut meanwhile."""
        while not self.flowing.wait(POLL):
            if self.closing.is_set():
                return False
        return not self.closing.is_set()

    def accept(self, listener):
        with listener:
            while not self.closing.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(JOIN_TIMEOUT)  # bounds a sendall to a client that stopped reading
                self.spawn(self.serve, client)

    def serve(self, client):
        """Connect ``client`` to the target once bytes flow, then copy both ways."""
        with client:
            if not self.waited_for_flow():
                return
            try:
                upstream = socket.create_connection(self.target, timeout=JOIN_TIMEOUT)
            except OSError:
                return
            with upstream:
                self.pump({client: upstream, upstream: client})

    def pump(self, peers):
        """Copy bytes both ways until either side hangs up or the proxy is cut."""
        while self.waited_for_flow():
            readable, _, _ = select.select(list(peers), [], [], POLL)
            for source in readable:
                try:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
                except OSError:
                    return
