"""Every error is an RFC 9457 problem document (``application/problem+json``).

Views raise ``pyramid.httpexceptions`` with a ``detail`` meant for the client (or
``InvalidBody``/``InvalidQuery`` with per-field errors); the exception views below turn them,
and everything unexpected, into problem documents. Nothing but the status phrase and our own
detail reaches the client: tracebacks, SQL and class names go to the server log only.

Two rules keep this view layer from fighting the transaction machinery:

- It never touches ``request.dbsession``: at commit time the transaction is already over, and a
  new session here would be joined to nothing and leak its connection.
- It never swallows a transient database conflict. It marks the error retryable again, so
  pyramid_retry replays the request (it discards this response) until the last attempt, which
  answers 503. pyramid_tm tags such errors itself only when they are raised by a view, not when
  they are raised by the commit. A read that a replica failed is replayed the same way: the
  replica is marked down, and the replay is served by another database
  (``myservice.data.replicas``).
"""

import logging
from http import HTTPStatus

import pydantic_core
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPConflict,
    HTTPException,
    HTTPNotFound,
    HTTPUnprocessableEntity,
)
from pyramid.response import Response
from pyramid_retry import is_last_attempt, mark_error_retryable
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from myservice.data.db import is_conflict
from myservice.data.replicas import is_replica_failure
from myservice.data.timeouts import DatabaseAway, DatabaseTimeout

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

#: Headers of a raised HTTP exception that belong on the problem response too.
KEPT_HEADERS = ("Allow", "Location", "Retry-After", "WWW-Authenticate", "ETag")


class InvalidBody(HTTPUnprocessableEntity):
    """422: ``errors`` holds one ``{"pointer", "detail"}`` per bad field of the body."""

    def __init__(self, errors, detail="the request body is invalid"):
        super().__init__(detail)
        self.errors = errors


class ConflictInBody(HTTPConflict):
    """409: ``errors`` holds one ``{"pointer", "detail"}`` per value that is taken."""

    def __init__(self, errors, detail):
        super().__init__(detail)
        self.errors = errors


class InvalidQuery(HTTPBadRequest):
    """400: ``errors`` holds one ``{"parameter", "detail"}`` per bad query parameter."""

    def __init__(self, errors, detail="a query parameter is invalid"):
        super().__init__(detail)
        self.errors = errors


def problem_document(status, detail=None, **members):
    """The JSON bytes of a problem document: type, title and status, then detail and members.

    Shared by the app's error views and by the server's own answers (``myservice.edge.server``).
    """
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    body.update(members)
    return pydantic_core.to_json(body)


def problem(status, detail=None, headers=None, **members):
    """A problem document response (see ``problem_document``) with any extra headers."""
    response = Response(
        body=problem_document(status, detail, **members),
        status=status,
        content_type=PROBLEM_JSON,
        charset=None,
    )
    if headers:
        response.headers.update(headers)
    return response


def http_exception_view(exc, request):
    """Pyramid's HTTP exceptions, raised by our views or by the router (404, 405)."""
    if exc.code < 400:
        return exc  # 304 Not Modified and friends are answers, not problems
    if isinstance(exc, HTTPNotFound):
        return not_found(exc, request)
    headers = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
    extra = {"errors": exc.errors} if getattr(exc, "errors", None) else {}
    return problem(exc.code, exc.detail, headers, **extra)


def not_found(exc, request):
    """404 for an unknown URL or resource; 405 with ``Allow`` for a known URL's wrong method."""
    if request.matched_route is None:
        return problem(404, f"nothing is at {request.path}")
    if isinstance(exc, PredicateMismatch):
        allowed = allowed_methods(request)
        if request.method not in allowed:
            return problem(
                405,
                f"{request.method} is not allowed on {request.path}",
                {"Allow": ", ".join(sorted(allowed))},
            )
        return problem(404, f"nothing is at {request.path}")
    return problem(404, exc.detail)


def allowed_methods(request):
    """The methods that the matched route's views accept (HEAD wherever GET is)."""
    introspector = request.registry.introspector
    route = introspector.get("routes", request.matched_route.name)
    methods = set()
    for related in introspector.related(route):
        if related.category_name == "views":
            accepted = related["request_methods"] or ()
            methods.update((accepted,) if isinstance(accepted, str) else accepted)
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def undecodable_url_view(exc, request):
    return problem(400, "the URL is not valid UTF-8")


def unexpected_error_view(exc, request):
    """Everything else: 503 for a database that is busy or away, a bare 500 otherwise."""
    if is_conflict(exc) or is_dead_connection(exc, request) or is_replica_failure(exc):
        mark_error_retryable(exc)  # pyramid_retry replays the request unless this was the last try
        if not is_last_attempt(request):
            log.info("replaying after a transient database failure: %s", exc.__class__.__name__)
            return problem(503)  # pyramid_retry discards this response and replays the request
        log.warning("transient database failure on every attempt: %s", exc.__class__.__name__)
    if is_conflict(exc):
        return problem(
            503, "the request conflicted with concurrent requests; retry it", {"Retry-After": "1"}
        )
    if is_database_too_slow(exc):
        log.error("database too slow: %s", getattr(exc, "orig", exc))
        return problem(503, "the database did not answer in time", {"Retry-After": "5"})
    if is_database_unavailable(exc):
        if isinstance(getattr(exc, "orig", None), DatabaseAway):  # logged when it timed out
            log.error("database unavailable: %s", exc.orig)
        else:
            log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        return problem(503, "the database is unavailable", {"Retry-After": "5"})
    log.error("unexpected error", exc_info=exc)
    return problem(500)


def is_dead_connection(exc, request):
    """A statement met a pooled connection that had died (the database restarted, a proxy
    dropped it), before anything was committed: a replay runs on a fresh connection.

    This replaces pinging every connection at checkout (a round trip per request). SQLAlchemy
    has already discarded the pool's older connections. A failure to connect is not replayed
    (the database is away: answer 503 at once), nor is one at COMMIT, where pyramid_tm has
    ended the transaction (``tm.active`` is gone) and the write may have happened.
    """
    return (
        isinstance(exc, DBAPIError)
        and exc.connection_invalidated
        and exc.statement is not None
        and "tm.active" in request.environ
    )


def is_database_too_slow(exc):
    """A request timeout (``myservice.data.timeouts``) ended the wait: the client's watchdog cut the
    connection, or the server cancelled the statement (57014) or its lock wait (55P03). Not
    replayed: the next attempt would most likely wait as long."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DatabaseTimeout) or sqlstate in ("57014", "55P03")


def is_database_unavailable(exc):
    """The database refused, dropped or timed out the connection, or the pool ran dry."""
    return isinstance(exc, OperationalError | PoolTimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def includeme(config):
    config.add_exception_view(http_exception_view, context=HTTPException)
    config.add_exception_view(undecodable_url_view, context=UnicodeDecodeError)
    config.add_exception_view(unexpected_error_view, context=Exception)
