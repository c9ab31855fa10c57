"""X-Request-ID: echoed or generated, returned on every response, stamped on every log line.

The id lives in the WSGI environ, which pyramid_retry reuses between attempts, so a retried
request keeps the id the client saw. ``LogFormatter`` stamps each log line with the id of the
request that Pyramid is serving on the current thread (``-`` outside a request).
"""

import logging
import re
import time
import uuid
from urllib.parse import quote

from pyramid.threadlocal import get_current_request
from pyramid.tweens import INGRESS

ENVIRON_KEY = "myservice.request_id"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

#: What webob leaves unescaped in ``request.path``.
PATH_SAFE = "/~!$&'()*+,;=:@"

access_log = logging.getLogger("myservice.access")


def request_id(request):
    """The client's X-Request-ID when it is well formed, else a fresh one."""
    environ = request.environ
    value = environ.get(ENVIRON_KEY)
    if value is None:
        value = environ[ENVIRON_KEY] = echoed_or_new(environ.get("HTTP_X_REQUEST_ID", ""))
    return value


def echoed_or_new(given):
    """``given`` when it is a well-formed request id, else a fresh one (also used by the server)."""
    return given if VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def request_id_tween_factory(handler, registry):
    def request_id_tween(request):
        started = time.perf_counter()
        request_id = request.request_id
        response = handler(request)
        response.headers["X-Request-ID"] = request_id
        access_log.info(
            "%s %s %s %.1fms",
            request.method,
            logged_path(request.environ),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    return request_id_tween


def logged_path(environ):
    """The path and query string as the client sent them, percent-encoded as webob does.

    Not ``request.path_qs``: it decodes the path as UTF-8, so a path that is not (``/users/%FF``,
    answered 400) would raise here, after the response, and turn it into a 500. Quoting the
    query string too keeps control characters out of the log line.
    """
    # WSGI strings hold the request's bytes as latin-1; the server has decoded the path's escapes.
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    path = quote(path, PATH_SAFE, "latin-1")
    query = environ.get("QUERY_STRING")
    if query:
        path += "?" + quote(query, PATH_SAFE + "%?", "latin-1")
    return path


class LogFormatter(logging.Formatter):
    """A formatter that offers ``%(request_id)s``: the id of the request this thread serves.

    Named as ``class`` in the ini files' ``[formatter_generic]``.
    """

    def format(self, record):
        request = get_current_request()
        record.request_id = request.environ.get(ENVIRON_KEY, "-") if request is not None else "-"
        return super().format(record)


def includeme(config):
    config.add_request_method(request_id, reify=True)
    config.add_tween("myservice.requestid.request_id_tween_factory", under=INGRESS)
