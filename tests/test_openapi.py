"""GET /openapi.json describes exactly what the service serves."""

import re

import pytest

from tests.test_groups import GROUP_FIELDS
from tests.test_users import USER_FIELDS


@pytest.fixture
def document(testapp):
    response = testapp.get("/openapi.json")
    assert response.content_type == "application/json"
    return response.json


def served_operations(app):
    """(path, method) for every route and view method the app really has."""
    introspector = app.registry.introspector
    operations = set()
    for route in introspector.get_category("routes"):
        pattern = route["introspectable"]["pattern"]
        path = re.sub(r"\{(\w+):\\d\{1,19\}\}", r"{\1}", pattern)
        for related in route["related"]:
            if related.category_name == "views" and related["request_methods"]:
                methods = related["request_methods"]
                for method in (methods,) if isinstance(methods, str) else methods:
                    operations.add((path, method.lower()))
    return operations


def test_the_document_is_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "myservice"


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
