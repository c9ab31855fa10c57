"""How a view states its part of the OpenAPI document, beside its ``@view_config``::

    @view_config(route_name="user", request_method="GET", renderer="json")
    @operation(
        "Read a user",
        headers=[IF_NONE_MATCH],
        responses={200: Reply("the user", UserOut, headers=("ETag",))},
    )
    def get_user(request): ...

Only what the view alone knows goes here; ``myservice.api.openapi`` adds what the route, the view's
configuration and the general rules imply (path parameters, security, 400/404/413/415/422/503,
X-Request-ID) when it builds the document.
"""

from dataclasses import dataclass, field
from http import HTTPStatus

from myservice.edge import consistency
from myservice.edge.jsonbody import JSON
from myservice.edge.problems import PROBLEM_JSON
from myservice.edge.requestid import VALID_REQUEST_ID

REF = "#/components/schemas/{model}"
JSON_MEDIA = "application/json"

#: The attribute of a view callable that holds its ``Operation``.
ATTRIBUTE = "openapi"

#: The response headers, by name: (description, schema).
RESPONSE_HEADERS = {
    "X-Request-ID": (
        "the request's id: the client's X-Request-ID when well formed, else a generated one",
        {"type": "string", "pattern": f"^{VALID_REQUEST_ID.pattern}$"},
    ),
    "ETag": ("the resource's version, quoted", {"type": "string", "pattern": '^"[0-9]+"$'}),
    "Location": ("the URL of the created resource", {"type": "string", "format": "uri"}),
    "Link": ('<url>; rel="next" while there is a next page', {"type": "string"}),
    "Retry-After": ("seconds to wait before retrying", {"type": "string", "pattern": "^[0-9]+$"}),
    "Idempotent-Replayed": (
        "true when this is the stored response of an earlier request with the same Idempotency-Key",
        {"type": "string", "enum": ["true"]},
    ),
    "Allow": ("the methods the URL accepts", {"type": "string"}),
    consistency.HEADER: (
        "with read replicas only: the position this request's writes reached or its read saw;"
        " send it with a later read to see at least that much",
        {"type": "string", "pattern": f"^{consistency.TOKEN.pattern}$"},
    ),
    "WWW-Authenticate": ("Bearer, with the error", {"type": "string", "pattern": "^Bearer"}),
}

PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document (application/problem+json).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["detail"],
                "properties": {
                    "pointer": {"type": "string", "description": "RFC 6901 pointer into the body"},
                    "parameter": {"type": "string", "description": "a query parameter"},
                    "header": {"type": "string", "description": "a request header"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}

#: What each problem status means here, and the headers that come with it.
PROBLEMS = {
    400: ("a malformed or unknown query parameter, header or body: errors[] names it", ()),
    401: ("no token, or an unknown one", ("WWW-Authenticate",)),
    403: ("the token lacks the scope this operation needs", ()),
    404: ("no such resource", ()),
    405: ("the URL does not accept this method", ("Allow",)),
    409: ("the request conflicts with the stored state", ()),
    412: ("If-Match names another version than the current one", ()),
    413: ("the body is larger than myservice.max_body_bytes", ()),
    415: ("the body is not application/json (utf-8)", ()),
    422: ("a field of the body is invalid: errors[] points at each", ()),
    503: (
        "the database is unavailable, or the request conflicted on every retry",
        ("Retry-After",),
    ),
}

RULES = """\
Every body is JSON (UTF-8). Every error is an RFC 9457 problem document
(application/problem+json). Every response carries X-Request-ID. A known URL asked with another
method answers 405 with Allow (components/responses/MethodNotAllowed); an unknown URL 404.
Collections are pages ordered by id: `limit`, and `cursor` = the `next_cursor` of the previous
page. A query parameter an operation does not list is 400 (errors[].parameter names it). A
request that fails leaves no trace."""


@dataclass(frozen=True)
class Reply:
    """A response: its description, body (a pydantic model, or a JSON schema) and headers.

    ``headers`` are always sent, ``optional`` ones sometimes; ``links`` (OpenAPI links) say how
    its values feed other operations."""

    description: str
    model: type | None = None
    headers: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    links: dict = field(default_factory=dict)
    schema: dict | None = None
    media: str = JSON_MEDIA

    def render(self, schemas, optional=()):
        headers = {"X-Request-ID": True} | dict.fromkeys(self.headers, True)
        headers |= dict.fromkeys((*self.optional, *optional), False)
        rendered = {
            "description": self.description,
            "headers": {
                name: {
                    "description": RESPONSE_HEADERS[name][0],
                    "required": required,
                    "schema": RESPONSE_HEADERS[name][1],
                }
                for name, required in headers.items()
            },
        }
        schema = schemas.ref(self.model, "serialization") if self.model else self.schema
        if schema is not None:
            rendered["content"] = {self.media: {"schema": schema}}
        if self.links:
            rendered["links"] = self.links
        return rendered


def problem_reply(status):
    description, headers = PROBLEMS[status]
    optional = ("WWW-Authenticate",) if status == 403 else ()
    return Reply(
        f"{HTTPStatus(status).phrase}: {description}",
        schema={"$ref": REF.format(model="Problem")},
        headers=headers,
        optional=optional,
        media=PROBLEM_JSON,
    )


METHOD_NOT_ALLOWED = problem_reply(405)


@dataclass(frozen=True)
class Header:
    """A request header an operation reads, with the responses it can lead to, and the
    response headers it can add to a success."""

    name: str
    description: str
    schema: dict = field(default_factory=lambda: {"type": "string"})
    problems: tuple[int, ...] = ()
    replies: dict = field(default_factory=dict)
    success_headers: tuple[str, ...] = ()

    def parameter(self):
        return {
            "name": self.name,
            "in": "header",
            "required": False,
            "description": self.description,
            "schema": self.schema,
        }


REQUEST_ID = Header(
    "X-Request-ID",
    "echoed in the response when it is 1 to 128 of A-Z a-z 0-9 . _ : - (else replaced)",
)
IF_MATCH = Header(
    "If-Match", "the ETag the change is made against: 412 unless it is current", problems=(412,)
)
#: Every operation that uses the database reads it (``build_operation`` adds it).
CONSISTENCY_TOKEN = Header(
    consistency.HEADER,
    "with read replicas only (ignored without): a Consistency-Token a response gave; the read"
    " is served by a database that has seen at least as much. Not one of ours: 400 (opaque, so"
    " no pattern: without replicas any value is ignored)",
    problems=(400,),
    success_headers=(consistency.HEADER,),
)
IF_NONE_MATCH = Header(
    "If-None-Match",
    "the ETag the client holds: 304 while it is current",
    replies={304: Reply("not modified: the ETag is current", headers=("ETag",))},
)


@dataclass(frozen=True)
class Operation:
    """What a view states about itself (see the module docstring).

    ``query`` and ``body`` are the pydantic models it validates them with; ``body_limits``
    maps an array member of the body to the setting that caps its length."""

    summary: str
    responses: dict
    description: str = ""
    query: type | None = None
    body: type | None = None
    media_types: frozenset = JSON
    body_limits: dict = field(default_factory=dict)
    headers: tuple = ()
    problems: tuple[int, ...] = ()
    database: bool = True


def operation(summary, **facts):
    """The view decorator: records an ``Operation`` on the view; changes nothing else."""

    def record(view):
        facts["headers"] = tuple(facts.get("headers", ()))
        setattr(view, ATTRIBUTE, Operation(summary, **facts))
        return view

    return record


def undocumented(view):
    """The least a view that states nothing can be described by (a page, say)."""
    doc = (getattr(view, "__doc__", None) or "").strip().splitlines()
    return Operation(doc[0] if doc else "undocumented", {200: Reply("OK")}, database=False)


def links(*operation_ids, **parameters):
    """OpenAPI links from a response to ``operation_ids`` (view names), each given the
    ``parameters`` (runtime expressions such as ``$response.body#/id``)."""
    return {
        operation_id: {"operationId": operation_id, "parameters": parameters}
        for operation_id in operation_ids
    }
