"""``Consistency-Token``: read-your-writes across requests when replicas serve reads.

Only with replicas (``myservice.data.replicas``); without them this tween is not installed:
no header is sent, and one received is ignored.

- Every successful response (2xx, 3xx) to a request that used the database carries the
  position it reached: after a write, the primary's WAL position once the commit is done;
  after a read, the serving database's position, taken on the read's own connection after its
  statements (``Replicas.see_position_at_end``). So a token is at or past every commit its
  request wrote or saw.
- A read (GET, HEAD) that sends one must be served by a database that has replayed that far
  (``replicas.Replicas.choose``); a token that is not one of ours is 400, naming the header.
  Other methods ignore it: they are served by the primary.

The token is ``1.`` and the position as 16 hex digits; clients treat it as opaque. The tween
sits above pyramid_tm, so a write's position is taken after its COMMIT: one round trip on the
primary (a read's is one on its own connection). If that round trip fails, the response goes
out without a token: the client keeps the one it has.
"""

import re

from myservice.data.db import WRITE_METHODS
from myservice.data.replicas import POSITION_KEY, READ_METHODS
from myservice.edge.problems import problem

HEADER = "Consistency-Token"
TOKEN = re.compile(r"1\.([0-9a-f]{16})")


def token(position):
    return f"1.{position:016x}"


def position_of(header_value):
    """The position a token names, or None when it is not a token."""
    match = TOKEN.fullmatch(header_value.strip())
    return None if match is None else int(match.group(1), 16)


def garbled():
    detail = "must be a Consistency-Token value as a response of this service gave it"
    return problem(
        400, f"the {HEADER} header {detail}", errors=[{"header": HEADER, "detail": detail}]
    )


def consistency_tween_factory(handler, registry):
    replicas = registry["replicas"]
    if replicas is None:
        return handler

    def consistency_tween(request):
        sent = request.headers.get(HEADER) if request.method in READ_METHODS else None
        if sent is not None:
            position = position_of(sent)
            if position is None:
                return garbled()
            request.environ[POSITION_KEY] = position
        response = handler(request)
        if response.status_code < 400 and "dbsession" in request.__dict__:
            wrote = request.method in WRITE_METHODS
            position = replicas.position_after(request.environ, wrote)
            if position is not None:
                response.headers[HEADER] = token(position)
        return response

    return consistency_tween


def includeme(config):
    config.add_tween(
        "myservice.edge.consistency.consistency_tween_factory",
        under="myservice.edge.headers.headers_tween_factory",
        over="pyramid_tm.tm_tween_factory",
    )
