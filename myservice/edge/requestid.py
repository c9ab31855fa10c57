"""X-Request-ID: echoed or generated, returned on every response, stamped on every log line.

The id lives in the WSGI environ, which pyramid_retry reuses between attempts, so a retried
request keeps the id the client saw. The formatters stamp each log line with the id of the
request that Pyramid is serving on the current thread (``-`` outside a request), unless the
line names its request itself (the access line, written after the request has ended):
``LogFormatter`` as plain text, ``JsonLogFormatter`` as one JSON object per line.
"""

import logging
import re
import uuid
from datetime import UTC, datetime

from pyramid.threadlocal import get_current_request
from pyramid.tweens import INGRESS
from pythonjsonlogger.orjson import OrjsonFormatter

ENVIRON_KEY = "myservice.request_id"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


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
        request_id = request.request_id
        response = handler(request)
        response.headers["X-Request-ID"] = request_id
        return response

    return request_id_tween


def stamp_request_id(record):
    """Give ``record`` a ``request_id``: its own when it has one, else the current request's."""
    if not hasattr(record, "request_id"):
        request = get_current_request()
        record.request_id = request.environ.get(ENVIRON_KEY, "-") if request is not None else "-"


class LogFormatter(logging.Formatter):
    """A formatter that offers ``%(request_id)s``: the id of the request this thread serves.

    Named as ``class`` in the ini files' ``[formatter_generic]``.
    """

    def format(self, record):
        stamp_request_id(record)
        return super().format(record)


class JsonLogFormatter(OrjsonFormatter):
    """One JSON object per line (python-json-logger, encoding with orjson: a third of the
    standard encoder's time per access line): ``time`` (RFC 3339, UTC), the fields the
    ini's ``format`` names (``levelname`` as ``level``, ``name`` as ``logger``), and every
    ``extra`` field of the record, such as the access line's (``myservice.edge.accesslog``).

    Named as ``class`` in the ini files' ``[formatter_json]``.
    """

    def __init__(self, fmt=None, datefmt=None, style="%", validate=True, **options):
        options.setdefault("timestamp", "time")
        options.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__(fmt, datefmt, style, validate, **options)
        # What ``add_fields`` would look up for every record, once: the format's fields (under
        # their new names), and the timestamp's key.
        self.named = [(self._get_rename(field), field) for field in self._required_fields]
        self.time_key = self._get_rename(
            self.timestamp if isinstance(self.timestamp, str) else "timestamp"
        )
        self.plain = not (self.defaults or self.static_fields or "asctime" in self._required_fields)

    def format(self, record):
        stamp_request_id(record)
        fields = getattr(record, "fields", None)  # an access line's (``accesslog.AccessRecord``)
        if fields is None or not self.plain or not self.timestamp:
            return super().format(record)
        return self.serialize_log_record(self.access_data(record, fields))

    def access_data(self, record, fields):
        """What ``format`` would make of an access line (no exception, no stack, no dict
        message), in one pass: the format's fields, then the line's, then the time."""
        record.message = record.getMessage()
        facts = record.__dict__
        data = {key: facts.get(field) for key, field in self.named}
        rename = self.rename_fields
        for field in fields:
            if field not in self._skip_fields:
                data[rename.get(field, field)] = facts[field]
        data[self.time_key] = datetime.fromtimestamp(record.created, tz=UTC)  # orjson: RFC 3339
        return data


def includeme(config):
    config.add_request_method(request_id, reify=True)
    config.add_tween("myservice.edge.requestid.request_id_tween_factory", under=INGRESS)
