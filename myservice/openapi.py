"""GET /openapi.json: the HTTP contract as OpenAPI 3.1.

Built once at startup. The schemas come from the pydantic models the views validate and render
with, so they cannot drift from the code; the paths are listed here, and a test checks them
against the routes the app really serves.
"""

import pydantic_core
from pydantic.json_schema import models_json_schema
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED

from .changes import ChangePage
from .views.bulk import UsersBulk, UsersCreated
from .views.groups import GroupCreate, GroupOut, GroupPage, GroupPatch
from .views.memberships import MembershipOut
from .views.users import UserCreate, UserOut, UserPage, UserPatch

REF = "#/components/schemas/{model}"

PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document (application/problem+json).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
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


def _ref(name):
    return {"$ref": REF.format(model=name)}


def _json(name):
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _problems(*statuses):
    problem = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    return {str(status): {"description": "problem", **problem} for status in statuses}


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
USER_ID = {**ID, "name": "user_id"}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"}}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "a repeat with the same key and body replays the first response; "
    "the same key with another body is 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}


def _body(name, *media_types):
    return {
        "required": True,
        "content": {media: {"schema": _ref(name)} for media in media_types or ["application/json"]},
    }


PATHS = {
    "/changes": {
        "get": {
            "summary": "Every committed change after a seq, oldest first, in commit order",
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": {"description": "a page", **_json("ChangePage")},
                **_problems(400),
            },
        },
    },
    "/docs": {
        "get": {
            "summary": "This document as a page for people (Swagger UI)",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        },
    },
    "/health": {
        "get": {"summary": "The process is up", "responses": {"200": {"description": "ok"}}},
    },
    "/health/ready": {
        "get": {
            "summary": "The database answers",
            "responses": {"200": {"description": "ready"}, **_problems(503)},
        },
    },
    "/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}},
    },
    "/users": {
        "post": {
            "summary": "Create a user",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body("UserCreate"),
            "responses": {
                "201": {"description": "created", **_json("UserOut")},
                **_problems(400, 409, 413, 415, 422),
            },
        },
        "get": {
            "summary": "List users by id, filtered by exact username or email (any case)",
            "parameters": [
                *PAGE,
                {"name": "username", "in": "query", "schema": {"type": "string"}},
                {"name": "email", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "a page", **_json("UserPage")}, **_problems(400)},
        },
    },
    "/users/{id}": {
        "parameters": [ID],
        "get": {
            "summary": "Read a user",
            "parameters": [IF_NONE_MATCH],
            "responses": {
                "200": {"description": "the user", **_json("UserOut")},
                "304": {"description": "not modified"},
                **_problems(404),
            },
        },
        "patch": {
            "summary": "Update a user (JSON merge patch)",
            "parameters": [IF_MATCH],
            "requestBody": _body("UserPatch", "application/json", "application/merge-patch+json"),
            "responses": {
                "200": {"description": "the updated user", **_json("UserOut")},
                **_problems(400, 404, 409, 412, 413, 415, 422),
            },
        },
        "delete": {
            "summary": "Delete a user and its memberships",
            "parameters": [IF_MATCH],
            "responses": {"204": {"description": "deleted"}, **_problems(404, 412)},
        },
    },
    "/users/bulk": {
        "post": {
            "summary": "Create many users, all or none (at most myservice.max_bulk)",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body("UsersBulk"),
            "responses": {
                "201": {"description": "created, in request order", **_json("UsersCreated")},
                **_problems(400, 409, 413, 415, 422),
            },
        },
    },
    "/users/{id}/groups": {
        "parameters": [ID],
        "get": {
            "summary": "The user's groups, by id",
            "parameters": PAGE,
            "responses": {
                "200": {"description": "a page", **_json("GroupPage")},
                **_problems(400, 404),
            },
        },
    },
    "/groups": {
        "post": {
            "summary": "Create a group",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body("GroupCreate"),
            "responses": {
                "201": {"description": "created", **_json("GroupOut")},
                **_problems(400, 409, 413, 415, 422),
            },
        },
        "get": {
            "summary": "List groups by id, filtered by exact name (any case)",
            "parameters": [*PAGE, {"name": "name", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "a page", **_json("GroupPage")}, **_problems(400)},
        },
    },
    "/groups/{id}": {
        "parameters": [ID],
        "get": {
            "summary": "Read a group",
            "parameters": [IF_NONE_MATCH],
            "responses": {
                "200": {"description": "the group", **_json("GroupOut")},
                "304": {"description": "not modified"},
                **_problems(404),
            },
        },
        "patch": {
            "summary": "Update a group (JSON merge patch); max_members may not go below the count",
            "parameters": [IF_MATCH],
            "requestBody": _body("GroupPatch", "application/json", "application/merge-patch+json"),
            "responses": {
                "200": {"description": "the updated group", **_json("GroupOut")},
                **_problems(400, 404, 409, 412, 413, 415, 422),
            },
        },
        "delete": {
            "summary": "Delete a group and its memberships",
            "parameters": [IF_MATCH],
            "responses": {"204": {"description": "deleted"}, **_problems(404, 412)},
        },
    },
    "/groups/{id}/members": {
        "parameters": [ID],
        "get": {
            "summary": "The group's members (users), by id",
            "parameters": PAGE,
            "responses": {
                "200": {"description": "a page", **_json("UserPage")},
                **_problems(400, 404),
            },
        },
    },
    "/groups/{id}/members/{user_id}": {
        "parameters": [ID, USER_ID],
        "put": {
            "summary": "Add the user to the group",
            "responses": {
                "201": {"description": "added", **_json("MembershipOut")},
                "200": {
                    "description": "already a member; nothing changed",
                    **_json("MembershipOut"),
                },
                **_problems(404, 409),
            },
        },
        "delete": {
            "summary": "Remove the user from the group",
            "responses": {"204": {"description": "removed"}, **_problems(404)},
        },
    },
}


def openapi_document():
    _, schemas = models_json_schema(
        [
            (ChangePage, "serialization"),
            (UserCreate, "validation"),
            (UserPatch, "validation"),
            (UserOut, "serialization"),
            (UserPage, "serialization"),
            (UsersBulk, "validation"),
            (UsersCreated, "serialization"),
            (GroupCreate, "validation"),
            (GroupPatch, "validation"),
            (GroupOut, "serialization"),
            (GroupPage, "serialization"),
            (MembershipOut, "serialization"),
        ],
        ref_template=REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "myservice", "version": "1"},
        "paths": PATHS,
        "components": {"schemas": {**schemas["$defs"], "Problem": PROBLEM}},
    }


def openapi_view(request):
    return Response(body=request.registry["openapi_json"], content_type="application/json")


def includeme(config):
    config.registry["openapi_json"] = pydantic_core.to_json(openapi_document())  # serialised once
    config.add_route("openapi", "/openapi.json")
    config.add_view(
        openapi_view, route_name="openapi", request_method="GET", permission=NO_PERMISSION_REQUIRED
    )
