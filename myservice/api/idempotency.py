"""``Idempotency-Key`` on POSTs: a client's retry of a request replays its first response.

Keys are the token's own (``request.identity``): the same key from another token is another key.
Make a POST view idempotent with ``@view_config(..., decorator=idempotent)``. A request that
carries the header (1 to 255 printable ASCII characters, no space at either end, else 400)
claims its key in its own transaction before the view runs, and the view's 2xx/3xx response
(status, ``KEPT_HEADERS``, body) is stored with it before it commits. So:

- a repeat with the same method, path and body (compared as canonical JSON, numbers exactly)
  gets the stored response, even if the resource has changed since, and the view does not run;
- a repeat with anything else is 422;
- a request that fails (4xx/5xx, a raise) stores nothing: its retry runs as if new;
- a concurrent repeat waits for the first to end (PostgreSQL waits on the key's row, SQLite
  writers take turns), then replays it: never a second resource.

Keys live ``myservice.idempotency_ttl`` seconds (default a day), then are free again. Each new
key purges a few expired ones; ``myservice-purge INI`` (``myservice.cli.purge``) purges them all.
"""

import functools
import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal

from pyramid.httpexceptions import HTTPBadRequest, HTTPUnprocessableEntity
from pyramid.response import Response

from myservice.api.apidoc import Header
from myservice.data.errors import BadSettings
from myservice.data.models.idempotency import claim_key, purge_expired, store_response
from myservice.data.models.meta import utcnow
from myservice.edge.jsonbody import json_body
from myservice.edge.validation import exact_integer

HEADER = "Idempotency-Key"
#: HTTP strips the spaces around a header's value, so a key cannot begin or end with one.
VALID_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")

#: The header as the OpenAPI document states it, on the views this decorates.
IDEMPOTENCY_KEY = Header(
    HEADER,
    "a repeat with the same key and body replays the first response (Idempotent-Replayed: "
    "true); the same key with another body is 422",
    schema={"type": "string", "pattern": f"^{VALID_KEY.pattern}$"},
    problems=(400, 422),
    success_headers=("Idempotent-Replayed",),
)

#: The response headers a replay repeats (X-Request-ID is the replaying request's own).
KEPT_HEADERS = ("Content-Type", "Location", "ETag")

DEFAULT_TTL_SECONDS = 24 * 60 * 60

#: Expired keys that each new key purges: more than one, so expired rows cannot pile up.
PURGE_PER_CLAIM = 10


def idempotent(view):
    """The view decorator: see the module docstring."""

    @functools.wraps(view)
    def idempotent_view(context, request):
        key = request.headers.get(HEADER)
        if key is None:
            return view(context, request)
        held = claim(request, key)
        if held is not None:
            return replay(held)
        response = view(context, request)
        if response.status_code < 400:
            kept = {
                name: response.headers[name] for name in KEPT_HEADERS if name in response.headers
            }
            token_id, body = request.identity.id, response.body
            store_response(request.dbsession, token_id, key, response.status_code, kept, body)
        return response

    return idempotent_view


def claim(request, key):
    """Claim ``key`` for this request and return None, or return the stored row of the same
    request to replay; 400 for a malformed key, 422 for a key used for another request."""
    if not VALID_KEY.fullmatch(key):
        raise InvalidKey()
    request_fingerprint = fingerprint(request)  # a bad body is refused before any BEGIN
    session, now = request.dbsession, utcnow()
    expires = now + timedelta(seconds=request.registry.settings["myservice.idempotency_ttl"])
    held = claim_key(session, request.identity.id, key, request_fingerprint, now, expires)
    if held is None:
        purge_expired(session, now, PURGE_PER_CLAIM)
    elif held.fingerprint != request_fingerprint:
        raise HTTPUnprocessableEntity(
            f"this {HEADER} was used for a different request; use a new key for a new request"
        )
    return held


class InvalidKey(HTTPBadRequest):
    def __init__(self):
        detail = "must be 1 to 255 printable ASCII characters, without a space at either end"
        super().__init__(f"the {HEADER} header {detail}")
        self.errors = [{"header": HEADER, "detail": detail}]


def fingerprint(request):
    """sha256 of the method, the path and the body as canonical JSON (``canonical``)."""
    body = canonical(json_body(request))
    return hashlib.sha256(json.dumps([request.method, request.path, body]).encode()).hexdigest()


def canonical(value):
    """The JSON text of a parsed body: sorted keys, no spaces, and each number exact.

    The same text as ``json.dumps(value, sort_keys=True, separators=(",", ":"))`` for a body
    without fractions or exponents. A ``Decimal`` (``json_body``) that is an integer is written
    as one (5.0 is 5); any other as its digits and exponent, trailing zeros dropped (1.50 is
    15e-1): two numbers have one text exactly when they are equal, however long.
    """
    if isinstance(value, dict):
        members = (f"{json.dumps(name)}:{canonical(item)}" for name, item in sorted(value.items()))
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(canonical, value)) + "]"
    if isinstance(value, Decimal):
        integral = exact_integer(value)
        return str(integral) if integral is not None else exact_decimal(value)
    return json.dumps(value)


def exact_decimal(number):
    """``number``'s digits and exponent, trailing zeros dropped: ``Decimal('-1.50')`` is
    ``-15e-1`` (``Decimal.normalize`` would round to the context's 28 digits)."""
    sign, digits, exponent = number.as_tuple()
    text = "".join(map(str, digits))
    significant = text.rstrip("0") or "0"
    return f"{'-' if sign else ''}{significant}e{exponent + len(text) - len(significant)}"


def replay(held):
    """The response stored with ``held``, marked as replayed."""
    response = Response(body=held.body, status=held.status, headerlist=[], charset=None)
    response.headers.update(held.headers)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def includeme(config):
    settings = config.get_settings()
    ttl = int(settings.get("myservice.idempotency_ttl", DEFAULT_TTL_SECONDS))
    if ttl <= 0:
        raise BadSettings("myservice.idempotency_ttl must be a positive number of seconds")
    settings["myservice.idempotency_ttl"] = ttl
