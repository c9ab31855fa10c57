"""GET /openapi.json describes exactly what the service serves.

That the server keeps to what it says is tests/test_fuzz.py's part.
"""

import json
import re

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from pyramid.config import Configurator
from pyramid.security import NO_PERMISSION_REQUIRED

import myservice
from tests.support.app import served_operations, served_views
from tests.support.contract import GROUP_FIELDS, USER_FIELDS


@pytest.fixture
def document(testapp):
    response = testapp.get("/openapi.json")
    assert response.content_type == "application/json"
    return response.json


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "myservice"
    validate(document)  # openapi-spec-validator, which picks 3.1 from the document


def test_the_validator_refuses_a_broken_document(document):
    broken = json.loads(json.dumps(document))
    broken["paths"]["/users"]["post"]["parameters"][0]["in"] = "body"  # OpenAPI 2's
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_view_states_its_own_operation(app):
    silent = [
        f"{method.upper()} {path}"
        for path, method, view in served_views(app)
        if not hasattr(view, "openapi")
    ]
    assert silent == []


def test_every_served_operation_is_documented_and_nothing_else(app, document):
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == served_operations(app)


def test_every_schema_reference_resolves(document):
    schemas = document["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas


def test_the_user_schemas_match_the_contract(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["UserOut"]["properties"]) == USER_FIELDS
    assert set(schemas["UserCreate"]["required"]) == {"username", "email"}


def test_the_group_and_membership_schemas_match_the_contract(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["GroupOut"]["properties"]) == GROUP_FIELDS
    assert set(schemas["GroupCreate"]["required"]) == {"name"}
    assert set(schemas["MembershipOut"]["properties"]) == {"group_id", "user_id", "joined_at"}
    assert set(schemas["UsersBulk"]["required"]) == {"users"}


def test_every_operation_states_the_general_rules(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            parameters = {(p["in"], p["name"]) for p in operation["parameters"]}
            assert ("header", "X-Request-ID") in parameters, name
            assert {("path", n) for n in re.findall(r"\{(\w+)\}", path)} <= parameters, name
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Request-ID"]["required"], (name, status)
                if int(status) >= 400:
                    assert set(response["content"]) == {"application/problem+json"}, name
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(operation["responses"]), name


def test_the_document_states_the_constraints_the_server_enforces(document):
    schemas = document["components"]["schemas"]
    user = schemas["UserCreate"]["properties"]
    assert user["username"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$"
    assert (user["email"]["format"], user["email"]["maxLength"]) == ("email", 254)
    assert {"type": "null"} in user["full_name"]["anyOf"]  # null is the default, ""
    users = document["paths"]["/users"]["get"]["parameters"]
    [cursor] = [p for p in users if p["name"] == "cursor"]
    assert cursor["schema"]["minLength"] == 1
    [user_id] = document["paths"]["/users/{id}"]["get"]["parameters"][:1]
    assert user_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    [after] = [
        p for p in document["paths"]["/changes"]["get"]["parameters"] if p["name"] == "after"
    ]
    assert after["schema"]["minimum"] == 0
    bulk = document["paths"]["/users/bulk"]["post"]["requestBody"]["content"]["application/json"]
    assert bulk["schema"]["allOf"][1] == {"properties": {"users": {"maxItems": 1000}}}


def test_links_lead_from_created_resources_to_their_operations(document):
    users = document["paths"]["/users"]["post"]["responses"]["201"]["links"]
    assert users["get_user"]["parameters"] == {"id": "$response.body#/id"}
    groups = document["paths"]["/groups"]["post"]["responses"]["201"]["links"]
    assert groups["join_group"]["parameters"] == {"id": "$response.body#/id"}
    member = document["paths"]["/groups/{id}/members/{user_id}"]["put"]["responses"]["201"]
    assert member["links"]["leave_group"]["parameters"] == {
        "id": "$response.body#/group_id",
        "user_id": "$response.body#/user_id",
    }
    operation_ids = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
    }
    for item in document["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operation_ids


def document_with(app_settings, configure):
    """The document of the service plus what ``configure(config)`` adds."""
    with Configurator(settings=dict(app_settings)) as config:
        config.include(myservice.includeme)
        configure(config)
    return json.loads(config.registry["openapi_json"])


def test_security_follows_each_view_s_permission(app_settings):
    def reader(request):
        """Read something."""
        return {}

    def writer(request):
        return {}

    def public(request):
        return {}

    def defaulted(request):
        return {}

    def configure(config):
        config.set_default_permission("write")
        for view, permission in [
            (reader, "read"),
            (writer, "write"),
            (public, NO_PERMISSION_REQUIRED),
            (defaulted, None),
        ]:
            config.add_route(view.__name__, f"/{view.__name__}")
            config.add_view(
                view, route_name=view.__name__, request_method="GET", permission=permission
            )

    paths = document_with(app_settings, configure)["paths"]

    assert paths["/reader"]["get"]["security"] == [{"bearerAuth": ["read"]}]
    assert paths["/writer"]["get"]["security"] == [{"bearerAuth": ["write"]}]
    assert paths["/defaulted"]["get"]["security"] == [{"bearerAuth": ["write"]}]
    assert paths["/public"]["get"]["security"] == []
    assert {"401", "403"}.isdisjoint(paths["/public"]["get"]["responses"])
    unauthorized = paths["/reader"]["get"]["responses"]["401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["required"]
    assert "WWW-Authenticate" in paths["/reader"]["get"]["responses"]["403"]["headers"]
    assert paths["/reader"]["get"]["summary"] == "Read something."  # it states nothing else


def test_static_assets_and_extra_pages_do_not_break_the_document(app_settings, document):
    def page(request):
        """A page for people."""
        return {}

    def configure(config):
        config.add_static_view("static", "myservice:views")
        config.add_route("page", "/page")
        config.add_view(page, route_name="page", permission=NO_PERMISSION_REQUIRED)

    paths = document_with(app_settings, configure)["paths"]

    assert not [path for path in paths if path.startswith("/static")]
    assert paths["/page"]["get"]["summary"] == "A page for people."
    assert set(paths) == set(document["paths"]) | {"/page"}
