"""Response headers every answer carries, and CORS when ``myservice.cors_origins`` names origins.

- ``X-Content-Type-Options: nosniff`` and, unless a view set its own, ``Cache-Control:
  no-store``: the answers hold personal data, which no shared cache may keep. (A client may
  still revalidate with ``If-None-Match``: that is the client's own copy.)
- CORS is off by default. With origins listed, a request from one of them gets
  ``Access-Control-Allow-Origin`` on every answer, errors included (this tween sits above the
  exception views), and a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
  answered here with 204, before routing and authentication, as browsers send it without
  credentials. Other origins get no CORS headers, so their browsers keep the answers from them.
"""

from pyramid.response import Response
from pyramid.settings import aslist

#: What a browser may send and read across origins.
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID,"
    " Consistency-Token"
)
EXPOSED_HEADERS = (
    "ETag, Location, Link, Retry-After, Idempotent-Replayed, X-Request-ID, WWW-Authenticate,"
    " Consistency-Token"
)

#: Seconds a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE = "600"


def headers_tween_factory(handler, registry):
    origins = frozenset(aslist(registry.settings.get("myservice.cors_origins", "")))

    def allowed(request):
        origin = request.headers.get("Origin")
        return origin if origin is not None and (origin in origins or "*" in origins) else None

    def headers_tween(request):
        origin = allowed(request) if origins else None
        is_preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in (
            request.headers
        )
        if origin is not None and is_preflight:
            response = Response(status=204)
            response.headers.update(
                {
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                }
            )
        else:
            response = handler(request)
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
        if origins:
            response.vary = (*(response.vary or ()), "Origin")
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    return headers_tween


def includeme(config):
    # Below the request id's tween, so that a preflight answered here carries an id too.
    config.add_tween(
        "myservice.edge.headers.headers_tween_factory",
        under="myservice.edge.requestid.request_id_tween_factory",
    )
