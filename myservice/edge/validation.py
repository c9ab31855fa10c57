"""Reading requests: the JSON body guard, and validation that answers 400/422 with pointers.

Bodies are parsed as strict RFC 8259 JSON (no NaN/Infinity, valid UTF-8, nothing trailing, no
member name twice in one object, as RFC 7493's I-JSON says) and then validated by a pydantic
model; query strings are validated by a pydantic model too. Every failure becomes a problem
document (see ``myservice.edge.problems``) that points at the bad field.
"""

import io
import re
from decimal import Decimal
from typing import Annotated
from urllib.parse import unquote_to_bytes

import jiter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPRequestEntityTooLarge,
    HTTPUnsupportedMediaType,
)
from pyramid.interfaces import IExecutionPolicy
from pyramid.router import default_execution_policy

from myservice.edge.accesslog import AFTER_EXECUTION_POLICY
from myservice.edge.problems import InvalidBody, InvalidQuery

JSON = frozenset({"application/json"})
JSON_OR_MERGE_PATCH = JSON | {"application/merge-patch+json"}

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_BULK = 1000  # users in one POST /users/bulk

# Our words for pydantic's error types, in the service's one voice ("must be ..."): pydantic's
# own say "Input should be ..." and some name Python classes. ``{...}`` is the error's context,
# and ``{unit}`` characters or items (pydantic checks a string's length after a validator as if
# it were a list's).
MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this resource",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must have {min_length} or more {unit}",
    "string_too_long": "must have at most {max_length} {unit}",
    "too_short": "must have {min_length} or more {unit}",
    "too_long": "must have at most {max_length} {unit}",
}

#: The same for a query string, whose members are parameters, not fields.
QUERY_MESSAGES = {**MESSAGES, "extra_forbidden": "is not a parameter of this operation"}


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul", "must not contain the NUL character")
    return value


class Stated:
    """Annotation metadata: states in the JSON schema (so in the OpenAPI document) a rule that
    a validator function enforces, which pydantic cannot see into; ``nullable``: null is
    accepted too (a ``BeforeValidator`` turns it into the default)."""

    def __init__(self, *, nullable=False, **rules):
        self.key = (nullable, tuple(rules.items()))  # hashable: typing hashes its metadata

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Stated) and self.key == other.key

    def __get_pydantic_json_schema__(self, core_schema, handler):
        nullable, rules = self.key
        schema = {**handler(core_schema), **dict(rules)}
        return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


#: The most digits of an integer that a number with an exponent (1e400) is expanded to: Python's
#: own limit for ``int(str)``; 1e99999999 stays a number, refused as not an integer.
MAX_INTEGER_DIGITS = 4300


def exact_integer(number):
    """The ``int`` a JSON number stands for (3, 3.0, 3e0), or None when it has a fraction.

    Bodies are parsed with fractions and exponents as ``Decimal`` (``json_body``): as floats,
    5.00000000000000000001 was 5 and a fraction of 5000 digits, or 1e-99999, was 0.
    """
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    if (
        isinstance(number, Decimal)
        and number.adjusted() < MAX_INTEGER_DIGITS
        and number == number.to_integral_value()
    ):
        return int(number)
    return None


def _integral(value):
    integral = exact_integer(value)
    return value if integral is None else integral


def integer(**constraints):
    """An integer in a JSON body, where 3 and 3.0 are the same number (JSON Schema agrees),
    with ``Field`` constraints (``ge``, ``le``): given here, before the conversion, so that the
    JSON schema states them."""
    return Annotated[int, Field(**constraints), BeforeValidator(_integral)]


#: A string a database can store: PostgreSQL text cannot hold NUL.
Text = Annotated[str, AfterValidator(_no_nul), Stated(pattern="^[^\\u0000]*$")]

DECIMAL = re.compile(r"-?[0-9]+")


def _decimal(value):
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise PydanticCustomError("int_parsing", "must be an integer")
    return value


#: An integer in a query string, in decimal digits only: pydantic's lax mode would also take
#: "5.0", "+5", "5_0" and " 5", so one page could have many URLs.
QueryInt = Annotated[int, BeforeValidator(_decimal)]


class Body(BaseModel):
    """A request body: exactly the declared members, of exactly the declared JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: exactly the declared parameters. One the operation does not declare (a
    typo: ``?usernme=ada``) is a 400 naming it, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class MergePatch(Body):
    """A JSON merge patch body: an absent member leaves its field as it is. The fields' ``None``
    defaults only mark them absent, so the JSON schema states no default."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler.resolve_ref_schema(handler(core_schema))
        for member in schema.get("properties", {}).values():
            member.pop("default", None)
        return schema


class Representation(BaseModel):
    """A response body, read from the attributes of a model object."""

    model_config = ConfigDict(from_attributes=True)


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


def validate(data, schema):
    """Parsed JSON validated by ``schema``, or 422 with one pointer per bad field."""
    if not isinstance(data, dict):
        raise InvalidBody([{"pointer": "", "detail": "the body must be a JSON object"}])
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise InvalidBody(
            [{"pointer": json_pointer(e["loc"]), "detail": _message(e)} for e in error.errors()]
        ) from None


def validate_query(request, schema=Query):
    """The query string validated by ``schema`` (a ``Query``: by default, no parameter at all),
    or 400 naming each bad or unknown parameter."""
    params, errors = {}, []
    for name, value in query_pairs(request):
        if name not in params:
            params[name] = value
        elif not any(e["parameter"] == name for e in errors):
            errors.append({"parameter": name, "detail": "must be given at most once"})
    if not errors:
        try:
            return schema.model_validate(params)
        except ValidationError as error:
            errors = [
                {"parameter": str(e["loc"][0]), "detail": _message(e, QUERY_MESSAGES)}
                for e in error.errors()
            ]
    raise InvalidQuery(errors)


def query_pairs(request):
    """The query string's (name, value) pairs, in order, split on ``&`` only.

    WebOb's ``request.GET`` splits on ``;`` too, an old CGI habit: ``?username=a;b`` would be
    the username ``a`` and a parameter ``b``. A ``;`` is an ordinary character in a query (RFC
    3986; OpenAPI's form style separates with ``&``), and browsers and HTTP libraries send it
    unescaped. Undecodable UTF-8 raises ``UnicodeDecodeError``, a 400 like any bad URL.
    """
    raw = request.query_string.encode("latin-1").replace(b"+", b" ")  # WSGI: bytes as latin-1
    for pair in raw.split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            yield unquote_to_bytes(name).decode(), unquote_to_bytes(value).decode()


def json_pointer(location):
    """RFC 6901 pointer for a pydantic error location: ("users", 3, "email") -> /users/3/email."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def _message(error, messages=MESSAGES):
    if error["type"] not in messages:
        return error["msg"]
    unit = "characters" if isinstance(error.get("input"), str) else "items"
    return messages[error["type"]].format(**error.get("ctx", {}), unit=unit)


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
