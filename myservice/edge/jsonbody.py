"""The JSON body guard: a request body is read within ``myservice.max_body_bytes``, in the media
types an operation accepts, as strict RFC 8259 JSON (413/415/400).

JSON is parsed with no NaN/Infinity, valid UTF-8, nothing trailing and no member name twice in
one object, as RFC 7493's I-JSON says; ``validate_body`` then hands it to a pydantic model
(``myservice.edge.validation``). ``includeme`` reads the body settings and wraps the execution
policy so that a body of unknown length is bounded before anything reads it.
"""

import io

import jiter
from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPRequestEntityTooLarge,
    HTTPUnsupportedMediaType,
)
from pyramid.interfaces import IExecutionPolicy
from pyramid.router import default_execution_policy

from myservice.edge.accesslog import AFTER_EXECUTION_POLICY
from myservice.edge.validation import validate

JSON = frozenset({"application/json"})
JSON_OR_MERGE_PATCH = JSON | {"application/merge-patch+json"}

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_BULK = 1000  # users in one POST /users/bulk


def max_body_bytes(request):
    return request.registry.settings["myservice.max_body_bytes"]


def too_large(limit):
    """The detail of a 413, from the app or from the server (``myservice.edge.server``)."""
    return f"the body is larger than {limit} bytes"


def bounded_body_policy(policy, limit):
    """An execution policy around ``policy`` (pyramid_retry's) that first bounds a body of
    unknown length (``bound_body``), before anything reads it."""

    def execution_policy(environ, router):
        bound_body(environ, limit)
        return policy(environ, router)

    return execution_policy


def bound_body(environ, limit):
    """Read a body of unknown length, at most ``limit`` + 1 bytes, and make it one of known
    length; a body with a Content-Length is left as it is (nothing reads more than it says).

    A server that does not enforce the limit itself (gunicorn) hands a chunked body over as a
    stream that ends when the body does (``wsgi.input_terminated``). Before routing and
    authentication, pyramid_retry makes the body seekable, and WebOb copies such a stream
    whole, to a temporary file: an anonymous client could fill the disk. Here the stream is
    read up to one byte past the limit into memory: a body within the limit is then served as
    any other, and a longer one is cut there and, its length now above the limit, refused 413
    (``json_body``) without another byte read.
    """
    if environ.get("CONTENT_LENGTH") or not (
        environ.get("wsgi.input_terminated") or environ.get("webob.is_body_readable")
    ):
        return
    body = environ["wsgi.input"].read(limit + 1)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["webob.is_body_seekable"] = True  # WebOb need not copy it again


def retry_attempts(request):
    """pyramid_retry's ``retry.activate_hook``: one attempt for a body we will refuse as too large.

    To replay a request pyramid_retry first copies its body; a body over the limit is answered
    413 without being read, so it gets a single attempt and is never copied.
    """
    length = request.content_length
    if length is not None and length > max_body_bytes(request):
        return 1
    return None


def json_body(request, media_types=JSON):
    """The request body as JSON, after the size, media type and syntax checks (413/415/400)."""
    limit = max_body_bytes(request)
    if request.content_length is not None and request.content_length > limit:
        raise HTTPRequestEntityTooLarge(too_large(limit))
    media_type, _, parameters = request.headers.get("Content-Type", "").partition(";")
    if media_type.strip().lower() not in media_types:
        raise HTTPUnsupportedMediaType(f"send the body as {' or '.join(sorted(media_types))}")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise HTTPUnsupportedMediaType("the only charset accepted is utf-8")
    body = request.body  # bounded by the check above; rewound, so a retry can read it again
    if len(body) > limit:
        raise HTTPRequestEntityTooLarge(too_large(limit))
    try:
        # jiter is pydantic's own parser; pydantic_core.from_json keeps the last of two members
        # of one name, which a proxy or a logger in front of us may read as the first.
        # A number with a fraction or an exponent is read as a Decimal, exactly: a float would
        # round away what tells 5.00000000000000000001 from 5 (``exact_integer``).
        return jiter.from_json(
            body, allow_inf_nan=False, catch_duplicate_keys=True, float_mode="decimal"
        )
    except ValueError as error:
        raise HTTPBadRequest(f"the body is not valid JSON: {error}") from None


def validate_body(request, schema, media_types=JSON):
    """The body validated by ``schema``, or 422 with one pointer per bad field."""
    return validate(json_body(request, media_types), schema)


def includeme(config):
    settings = config.get_settings()
    settings["myservice.max_body_bytes"] = int(
        settings.get("myservice.max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    )
    settings["myservice.max_bulk"] = int(settings.get("myservice.max_bulk", DEFAULT_MAX_BULK))

    def wrap_execution_policy():
        registry = config.registry
        policy = registry.queryUtility(IExecutionPolicy, default=default_execution_policy)
        limit = settings["myservice.max_body_bytes"]
        registry.registerUtility(bounded_body_policy(policy, limit), IExecutionPolicy)

    # After pyramid_retry's policy is set (order 0), so that it wraps it.
    config.action(None, wrap_execution_policy, order=AFTER_EXECUTION_POLICY)
