"""GET /openapi.json: the HTTP contract as OpenAPI 3.1, built at startup from the views.

Each view states the facts only it knows with ``@operation(...)``, beside its ``@view_config``:
a summary, its query and body models, the request headers it reads, its responses (models,
headers, links) and the problems only it answers. When the configuration is committed the
document is built by walking Pyramid's introspector, which knows the rest:

- the path and its parameters, from the route's pattern (``{id:[0-9]{1,19}}`` is an id);
- the method, from the view's ``request_method``;
- the security, from the view's permission (or the registry's default permission);
- the problems every operation of a kind shares: 400 for a bad or unknown query parameter (any
  operation), 400/413/415/422 for a body, 404 for a URL id, 401/403 for a protected view, 503
  while the database is away.

The views hold to it: a query parameter the document does not give an operation is a 400
naming it. The query models forbid the others (``myservice.edge.validation.Query``), and an
operation without one refuses any (``refuse_undeclared_parameters``).

Schemas come from the pydantic models that the views validate and render with, so the document
cannot drift from the code. ``tests/test_fuzz.py`` holds the server to it with schemathesis.
"""

import re

import pydantic_core
from pydantic.json_schema import models_json_schema
from pyramid.config import PHASE3_CONFIG
from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import IDefaultPermission
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.static import static_view

from myservice.api import apidoc
from myservice.api.apidoc import REF, Reply, operation
from myservice.api.routes import ID
from myservice.data.models import MAX_ID
from myservice.data.replicas import READ_METHODS
from myservice.edge.validation import validate_query

#: ``{name}`` or ``{name:regex}`` in a route pattern (the regex may hold one level of braces).
PLACEHOLDER = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


def id_parameter(name):
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": "a positive 64-bit integer; an id no row can have is 404",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def openapi_path(pattern):
    """The OpenAPI path of a route pattern, and its path parameters."""
    parameters = []

    def placeholder(match):
        name, regex = match.groups()
        if regex == ID:
            parameters.append(id_parameter(name))
        else:
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
        return "{" + name + "}"

    path = PLACEHOLDER.sub(placeholder, pattern)
    return (path if path.startswith("/") else "/" + path), parameters


class Schemas:
    """The pydantic models the operations refer to, turned into components at the end.

    ``ref`` hands out one placeholder dict per (model, mode), filled with the model's ``$ref``
    once every model is known (pydantic names a model by what else is in the set)."""

    def __init__(self):
        self.wanted = {}

    def ref(self, model, mode):
        return self.wanted.setdefault((model, mode), {})

    def components(self):
        if not self.wanted:
            return {}
        refs, schemas = models_json_schema(list(self.wanted), ref_template=REF)
        for key, placeholder in self.wanted.items():
            placeholder.update(refs[key])
        return schemas.get("$defs", {})


def query_parameters(model):
    """The query parameters of a pydantic query model, one per field."""
    schema = model.model_json_schema(mode="validation")
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = {key: value for key, value in prop.items() if key != "title"}
        alternatives = [alt for alt in prop.pop("anyOf", []) if alt != {"type": "null"}]
        if alternatives:  # ``X | None``: an absent parameter is the None
            [only] = alternatives
            prop = {**only, **prop}
        if prop.get("default", ...) is None:
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": name in schema.get("required", [])}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append({**parameter, "schema": prop})
    return parameters


def security_of(introspector, view, default_permission):
    """``security`` from the view's permission: [] when public, else the bearer scope."""
    permissions = [
        r["value"] for r in introspector.related(view) if r.category_name == "permissions"
    ]
    permission = permissions[0] if permissions else default_permission
    if permission is None or permission == NO_PERMISSION_REQUIRED:
        return []
    return [{"bearerAuth": [permission]}]


def build_operation(facts, view_name, path_parameters, security, schemas, settings, method="GET"):
    """One OpenAPI operation: the view's facts plus everything its kind implies (an operation
    that uses the database may answer a Consistency-Token; a read accepts one)."""
    parameters = [*path_parameters]
    replies = dict(facts.responses)
    problems = set(facts.problems) | {400}  # a parameter it does not define, at least
    if facts.query is not None:
        parameters += query_parameters(facts.query)
    reads = facts.database and method in READ_METHODS
    headers = (*facts.headers, apidoc.CONSISTENCY_TOKEN) if reads else facts.headers
    for header in headers:
        parameters.append(header.parameter())
        problems.update(header.problems)
        replies.update(header.replies)
    parameters.append(apidoc.REQUEST_ID.parameter())
    if path_parameters:
        problems.add(404)
    if facts.body is not None:
        problems.update((400, 413, 415, 422))
    if facts.database:
        problems.add(503)
    if security:
        problems.update((401, 403))
    sometimes = tuple(name for header in headers for name in header.success_headers)
    if facts.database and not reads:
        sometimes += apidoc.CONSISTENCY_TOKEN.success_headers
    responses = {}
    for status, reply in sorted(replies.items()):
        responses[str(status)] = reply.render(schemas, sometimes if status < 300 else ())
    for status in sorted(problems - set(replies)):
        responses[str(status)] = apidoc.problem_reply(status).render(schemas)
    operation = {
        "operationId": view_name,
        "summary": facts.summary,
        "parameters": parameters,
        "responses": responses,
        "security": security,
    }
    if facts.description:
        operation["description"] = facts.description
    if facts.body is not None:
        operation["requestBody"] = request_body(facts, schemas, settings)
    return operation


def request_body(facts, schemas, settings):
    """The body's model, plus the limits that settings put on it (the body's size, and the
    length of arrays such as the users of a bulk create)."""
    schema = schemas.ref(facts.body, "validation")
    limits = {
        member: {"maxItems": int(settings[setting])}
        for member, setting in facts.body_limits.items()
    }
    if limits:
        schema = {"allOf": [schema, {"properties": limits}]}
    return {
        "required": True,
        "description": f"at most {settings['myservice.max_body_bytes']} bytes, else 413",
        "content": {media: {"schema": schema} for media in sorted(facts.media_types)},
    }


def served_views(introspector):
    """(route introspectable, view introspectable, method) for every view of every route that
    can be described: a static asset route (``add_static_view``, or a route with a ``*``
    remainder) is skipped."""
    for route in introspector.get_category("routes"):
        route_intr = route["introspectable"]
        if route_intr["static"] or "*" in route_intr["pattern"]:
            continue
        for view in route["related"]:
            if view.category_name != "views" or isinstance(view["callable"], static_view):
                continue
            methods = view["request_methods"] or ("GET",)
            for method in (methods,) if isinstance(methods, str) else sorted(methods):
                yield route_intr, view, method


def openapi_document(registry):
    """The whole document, from the registry of a committed configuration."""
    introspector = registry.introspector
    default_permission = registry.queryUtility(IDefaultPermission)
    schemas, paths, operation_ids = Schemas(), {}, set()
    for route, view, method in served_views(introspector):
        path, path_parameters = openapi_path(route["pattern"])
        callable_ = view["callable"]
        facts = getattr(callable_, apidoc.ATTRIBUTE, None) or apidoc.undocumented(callable_)
        view_name = getattr(callable_, "__name__", route["name"])
        if view_name in operation_ids:
            raise ConfigurationError(f"two views are named {view_name}: operationIds clash")
        operation_ids.add(view_name)
        security = security_of(introspector, view, default_permission)
        paths.setdefault(path, {})[method.lower()] = build_operation(
            facts, view_name, path_parameters, security, schemas, registry.settings, method
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "myservice", "version": "1", "description": apidoc.RULES},
        "paths": paths,
        "components": {
            "schemas": {**schemas.components(), "Problem": apidoc.PROBLEM},
            "responses": {"MethodNotAllowed": apidoc.METHOD_NOT_ALLOWED.render(schemas)},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <token>; scopes read (GETs), "
                    "write (changes)",
                }
            },
        },
    }


@operation(
    "This document",
    responses={200: Reply("the OpenAPI 3.1 document", schema={"type": "object"})},
    database=False,
)
def openapi_view(request):
    return Response(body=request.registry["openapi_json"], content_type="application/json")


def refuse_undeclared_parameters(view, info):
    """A view deriver: an operation that takes no query parameters refuses any (400 naming each),
    as one that takes some refuses the others (its ``Query`` model forbids them). A view that
    states no operation (the docs page's static files) is left as it is."""
    facts = getattr(info.original_view, apidoc.ATTRIBUTE, None)
    if info.exception_only or facts is None or facts.query is not None:
        return view

    def refusing(context, request):
        if request.query_string:
            validate_query(request)  # with no parameters declared
        return view(context, request)

    return refusing


def includeme(config):
    # After the permission check (a 401 or 403 first), before the view's decorators.
    config.add_view_deriver(
        refuse_undeclared_parameters, under="http_cached_view", over="decorated_view"
    )

    def build():  # after every other action: the introspector then knows every view
        document = openapi_document(config.registry)
        config.registry["openapi_json"] = pydantic_core.to_json(document)  # serialised once

    config.add_route("openapi", "/openapi.json")
    config.add_view(
        openapi_view,
        route_name="openapi",
        request_method="GET",
        permission=NO_PERMISSION_REQUIRED,
    )
    config.action(None, build, order=PHASE3_CONFIG + 1)
