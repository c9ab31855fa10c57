"""One access line per request, however many attempts pyramid_retry made at it.

pyramid_retry is an *execution policy*: it runs the whole tween chain once per attempt, each
time with a new request object, and the two share only the WSGI environ. A tween sees every
attempt and cannot tell which response will be the final one, so the line is written by a
thin execution policy wrapped around pyramid_retry's (``served_policy``): it times the request
from the start of its first attempt to its final response, and sees that response's status.
What only a request object knows (the matched route, how many attempts ran) is left in the
environ by a tween (``note_attempt``).

The line goes to the ``myservice.access`` logger at INFO. Its message reads
``GET /users/7 200 1.3ms route=user retries=0`` in plain text (a query shows the values of
its paging parameters only: ``GET /users?email=***&limit=2``); the JSON formatter
(``myservice.edge.requestid.JsonLogFormatter``) adds the same facts as fields: ``request_id``,
``method``, ``path``, ``route``, ``status``, ``duration_ms``, ``retries`` and ``token``, the
name of the request's token when the security policy left one in the environ (``TOKEN_KEY``;
this module never looks a token up). The same record (``Served``) goes to every observer that
``config.add_served_observer`` registered: the metrics count requests from it.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

from pyramid.interfaces import IExecutionPolicy
from pyramid.router import default_execution_policy
from pyramid.tweens import INGRESS

from myservice.edge.logwriting import DeferredRecords
from myservice.edge.requestid import ENVIRON_KEY

access_log = logging.getLogger("myservice.access")

#: The name of the token that authenticated the request; set by the security policy.
TOKEN_KEY = "myservice.token_name"
#: The matched route's name (None: no route matched) and the attempts made so far.
ROUTE_KEY = "myservice.route"
ATTEMPTS_KEY = "myservice.attempts"

#: What WebOb leaves unquoted in a path (``webob.request.PATH_SAFE``).
PATH_SAFE = "/~!$&'()*+,;=:@"

#: Query parameters whose values the access line shows: paging, never personal data. Every
#: other value (``?email=``, ``?username=``, ``?name=``) is shown as ``REDACTED``.
LOGGED_PARAMETERS = frozenset({"limit", "after", "cursor"})
REDACTED = "***"

#: After every ``set_execution_policy`` (pyramid_retry's runs at the default order, 0).
AFTER_EXECUTION_POLICY = 1


@dataclass(slots=True)
class Served:
    """What became of one request, once its final response was made."""

    request_id: str
    method: str
    path: str
    route: str | None
    status: int
    seconds: float
    retries: int
    token: str | None


def served_policy(policy, observers):
    """``policy`` (pyramid_retry's), then each observer of the request's ``Served``."""

    def execution_policy(environ, router):
        started = time.perf_counter()
        status = 500  # what the server answers when the policy raises
        try:
            response = policy(environ, router)
            status = response.status_code
            return response
        finally:
            served = Served(
                request_id=environ.get(ENVIRON_KEY, "-"),
                method=environ["REQUEST_METHOD"],
                path=path_qs(environ),
                route=environ.get(ROUTE_KEY),
                status=status,
                seconds=time.perf_counter() - started,
                retries=max(environ.get(ATTEMPTS_KEY, 1) - 1, 0),
                token=environ.get(TOKEN_KEY),
            )
            for observe in observers:
                observe(served)

    return execution_policy


def path_qs(environ):
    """The path and query as the client sent them: percent-encoded as WebOb's ``path_qs``
    would be (so no decoded newline can forge a log line), without building a request, and so
    without decoding a path that is not UTF-8 (``/users/%FF``, answered 400), which would raise
    after the response. The query is quoted too: no control character reaches the log."""
    path = quote(
        environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), PATH_SAFE, "latin-1"
    )
    query = environ.get("QUERY_STRING")
    return f"{path}?{quote(redacted(query), PATH_SAFE + '%?', 'latin-1')}" if query else path


def redacted(query):
    """``query`` with the value of each parameter but ``LOGGED_PARAMETERS`` replaced by
    ``REDACTED``: a filter's value is an email or a name, which has no place in a log."""
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        shown = not equals or unquote_plus(name, "latin-1") in LOGGED_PARAMETERS
        parts.append(part if shown else f"{name}={REDACTED}")
    return "&".join(parts)


#: What every access line's record holds alike (formatters read a record's ``__dict__``): a
#: record made once, as ``Logger.info`` would make it, less what varies from line to line.
ACCESS_RECORD = {
    name: value
    for name, value in logging.LogRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %.1fms route=%s retries=%s%s",
        None,
        None,
        "log_access",
    ).__dict__.items()
    if name not in {"created", "msecs", "relativeCreated", "thread", "threadName", "process"}
}


class AccessRecord(logging.LogRecord):
    """The access line's log record, made without the logging module's per-record work.

    ``Logger.info`` would look for its caller's frame and work out some twenty attributes, most
    of which are the same for every access line: this record copies those (``ACCESS_RECORD``)
    and fills only the time, the thread (both given: those of the request's response, which
    ``log_access`` queues for the log's thread to make the record) and the process. It goes
    through the logger's handlers, filters and formatters as any record does
    (``Logger.handle``), so the ini's logging sections still decide where and how it is
    written. Its facts are attributes, as ``extra=`` would have made them, named by ``fields``
    (a class attribute, so no formatter takes it for a fact), which
    ``requestid.JsonLogFormatter`` writes in one step.
    """

    fields = ("request_id", "method", "path", "route", "status", "duration_ms", "retries", "token")

    def __init__(self, served, created, thread):  # what LogRecord.__init__ does, for this line
        self.__dict__.update(ACCESS_RECORD)
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - logging._startTime) * 1000
        self.thread = thread.ident
        self.threadName = thread.name
        self.process = os.getpid()
        self.args = (
            served.method,
            served.path,
            served.status,
            served.seconds * 1000,
            served.route or "-",
            served.retries,
            f" token={served.token}" if served.token is not None else "",
        )
        self.request_id = served.request_id
        self.method = served.method
        self.path = served.path.partition("?")[0]
        self.route = served.route
        self.status = served.status
        self.duration_ms = round(served.seconds * 1000, 3)
        self.retries = served.retries
        self.token = served.token


#: The access lines' records, made and logged in batches off the serving thread
#: (``edge.logwriting``).
ACCESS_RECORDS = DeferredRecords(access_log, AccessRecord)


def log_access(served):
    """The access line, in the ini's format: plain text or JSON. The serving thread takes only
    the moment and itself; the record is made with the others of its batch."""
    if access_log.isEnabledFor(logging.INFO):
        ACCESS_RECORDS.add(served, time.time(), threading.current_thread())


def note_attempt_tween_factory(handler, registry):
    def note_attempt(request):
        environ = request.environ
        environ[ATTEMPTS_KEY] = environ.get(ATTEMPTS_KEY, 0) + 1
        try:
            return handler(request)
        finally:
            route = request.matched_route
            environ[ROUTE_KEY] = route.name if route is not None else None

    return note_attempt


def add_served_observer(config, observer):
    """Config directive: call ``observer(served)`` once per request, after its final response."""
    config.registry["served_observers"].append(observer)


def includeme(config):
    config.registry["served_observers"] = [log_access]
    config.add_directive("add_served_observer", add_served_observer)
    config.add_tween("myservice.edge.accesslog.note_attempt_tween_factory", under=INGRESS)

    def wrap_execution_policy():
        registry = config.registry
        policy = registry.queryUtility(IExecutionPolicy, default=default_execution_policy)
        observers = tuple(registry["served_observers"])
        registry.registerUtility(served_policy(policy, observers), IExecutionPolicy)

    config.action(None, wrap_execution_policy, order=AFTER_EXECUTION_POLICY)
