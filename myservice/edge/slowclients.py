"""Slow clients: how long a client may take to send its request, on our waitress server.

A client that trickles its head or body a byte at a time would otherwise hold one of the
server's connection slots for as long as it likes, and make a graceful stop wait for it.
``SlowClients`` is checked from the server's main loop (``myservice.edge.stopping.run``/``drain``).
"""

import time

from waitress.channel import HTTPChannel
from waitress.utilities import Error


class RequestTimedOut(Error):
    code = 408
    reason = "Request Timeout"


class SlowClients:
    """Bounds on how long a client takes to send a request, checked about every second.

    waitress reads heads and bodies in its main loop, so a slow client holds no thread, but it
    holds one of ``connection_limit`` connections, and a graceful stop waits for it; its
    ``channel_timeout`` is of idleness, which a byte now and then resets. So:

    - a request's head must be in ``head_timeout`` seconds after its first byte arrived;
    - its body ``body_timeout`` seconds after the head, plus one second per ``body_min_rate``
      bytes it has sent: a body may pause, but must keep up that pace on average;
    - a new connection must send its first byte within ``head_timeout`` seconds.

    A late request is answered 408 (a problem document) and its connection closed; a silent
    new connection is closed. Only while the server waits for the client: while it is
    answering an earlier request on the connection, the clock stands still.
    """

    OPTIONS = {
        "request_head_timeout": "head_timeout",
        "request_body_timeout": "body_timeout",
        "request_body_min_rate": "body_min_rate",
    }

    #: Seconds between two checks, and the longest the main loop waits for a socket.
    INTERVAL = 1.0

    def __init__(self, head_timeout=10.0, body_timeout=10.0, body_min_rate=4096.0):
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.next_check = 0.0

    @classmethod
    def from_options(cls, options):
        """The bounds named in ``options`` (``[server:main]``), taken out of them."""
        given = {field: options.pop(name) for name, field in cls.OPTIONS.items() if name in options}
        return cls(**{field: float(value) for field, value in given.items()})

    def check(self, sockets):
        """Refuse what is late, at most once per ``INTERVAL``."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + self.INTERVAL
        for channel in [d for d in sockets.values() if isinstance(d, HTTPChannel)]:
            request = channel.request
            if channel.requests or channel.total_outbufs_len or channel.will_close:
                if request is not None:
                    request.restart_clock()  # the client may be waiting for us
            elif request is None:
                if self.silent_too_long(channel):
                    channel.will_close = True
            elif (late := self.lateness(request, now)) is not None:
                refuse(channel, RequestTimedOut(late))

    def silent_too_long(self, channel):
        """A new connection that has sent nothing for ``head_timeout`` (waitress stamps both
        times with ``time.time()`` when it accepts, and ``last_activity`` again on each read)."""
        never_heard = channel.last_activity == channel.creation_time
        return never_heard and time.time() - channel.creation_time > self.head_timeout

    def lateness(self, request, now):
        """What ``request``'s client is late with, or None."""
        waited = now - request.waiting_since
        if not request.headers_finished:
            if waited > self.head_timeout:
                return f"the request head did not arrive within {self.head_timeout:g} s"
            return None
        sent = request.body_bytes_received - request.body_bytes_by_then
        if waited > self.body_timeout + sent / self.body_min_rate:
            return f"the body arrived slower than {self.body_min_rate:g} bytes/s"
        return None


def refuse(channel, error):
    """Complete ``channel``'s partial request as refused with ``error``, as waitress does with a
    request it cannot parse: its error task answers, and the connection is closed after it."""
    request = channel.request
    if not request.headers_finished:  # what the answer needs of a head (waitress's 431 does so)
        request.parse_header(b"GET / HTTP/1.0\r\n")
    request.error = error
    request.completed = True
    with channel.requests_lock:
        channel.requests.append(request)
        channel.request = None
    channel.server.add_task(channel)
