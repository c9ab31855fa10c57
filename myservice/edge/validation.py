"""Validating requests: the schema types of bodies and query strings (``Body``, ``Query``,
``Text``, ``integer``, ``QueryInt``...), and validation that answers 400/422 with pointers.

A body, once the JSON body guard has read and parsed it (``myservice.edge.jsonbody``), is
validated by a pydantic model (``validate``); a query string is validated by a pydantic model
too (``validate_query``). Every failure becomes a problem document (see
``myservice.edge.problems``) that points at the bad field.
"""

import re
from decimal import Decimal
from typing import Annotated
from urllib.parse import unquote_to_bytes

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from myservice.edge.problems import InvalidBody, InvalidQuery

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

    Bodies are parsed with fractions and exponents as ``Decimal`` (``jsonbody.json_body``): as
    floats, 5.00000000000000000001 was 5 and a fraction of 5000 digits, or 1e-99999, was 0.
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
