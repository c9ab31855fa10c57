"""The general rules of the API: bodies, problem documents, methods, request ids."""

import pytest
from webob import Request

from tests.support.app import app_with_views, served_operations, with_token
from tests.support.factories import ADA
from tests.support.problems import assert_problem

VALID = b'{"username": "ada", "email": "ada@example.com"}'


def post(testapp, body, content_type="application/json", status=201, **headers):
    return testapp.post(
        "/users", body, headers={"Content-Type": content_type, **headers}, status=status
    )


# -- request bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'Application/JSON; charset="UTF-8"'],
)
def test_json_with_or_without_utf8_charset_is_accepted(testapp, content_type):
    post(testapp, VALID, content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/merge-patch+json",
        "",
    ],
)
def test_a_body_of_another_media_type_is_415(testapp, content_type):
    assert_problem(post(testapp, VALID, content_type, status=415), 415)
    assert testapp.get("/users").json["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"username": "ada", "email": "ada@example.com"} trailing',
        b'{"username": "ada", "email": "ada@example.com", "full_name": NaN}',
        b'{"username": "ada", "email": "ada@example.com", "full_name": Infinity}',
        b'{"username": "ada", "email": "ada@example.com", "full_name": "\xff"}',
        b'{"username": "ada", "email": "ada@example.com", "full_name": "\\ud800"}',
        b"{'username': 'ada'}",
        b'{"username": "ada", "email": "ada@example.com", "username": "eve"}',
        b"[" * 100_000,
    ],
)
def test_a_body_that_is_not_strict_json_is_400(testapp, body):
    problem = assert_problem(post(testapp, body, status=400), 400)
    assert "JSON" in problem["detail"]


def test_deeply_nested_valid_json_is_a_client_error(testapp):
    response = post(testapp, b"[" * 5000 + b"]" * 5000, status="*")
    assert response.status_code in (400, 422)


def test_a_huge_number_is_a_422_not_a_crash(testapp):
    body = b'{"username": "ada", "email": "ada@example.com", "full_name": 1e400}'
    assert_problem(post(testapp, body, status=422), 422)


def test_a_body_over_the_limit_is_413(testapp, app_settings):
    limit = int(app_settings["myservice.max_body_bytes"])
    body = b'{"username": "ada", "email": "ada@example.com", "full_name": "' + b"x" * limit + b'"}'
    assert_problem(post(testapp, body, status=413), 413)


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(testapp, app_settings):
    limit = int(app_settings["myservice.max_body_bytes"])
    # Declare more than the limit but send a short body: only the declaration can be judged.
    request = Request.blank("/users", testapp.extra_environ, method="POST", body=VALID)
    request.content_type = "application/json"
    request.environ["CONTENT_LENGTH"] = str(limit + 1)
    response = request.get_response(testapp.app)
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"


class ServerInput:
    """``wsgi.input`` as gunicorn hands a chunked body to the app: no Content-Length, read until
    it ends (``wsgi.input_terminated``), whatever its size. It counts what the app reads."""

    def __init__(self, body, size):
        self.body, self.size, self.served = body, size, 0

    def read(self, size=-1):
        left = self.size - self.served
        size = left if size is None or size < 0 else min(size, left)
        chunk = (self.body[self.served : self.served + size]).ljust(size, b" ")
        self.served += size
        return chunk

    def readline(self, size=-1):
        return self.read(size)


def post_of_unknown_length(testapp, body, size, authorization=True):
    """POST /users with ``body`` padded with spaces to ``size`` bytes, its length unknown."""
    environ = testapp.extra_environ if authorization else {}
    request = Request.blank("/users", environ, method="POST")
    request.content_type = "application/json"
    request.environ.pop("CONTENT_LENGTH", None)
    body_input = ServerInput(body, size)
    request.environ.update({"wsgi.input": body_input, "wsgi.input_terminated": True})
    return request.get_response(testapp.app), body_input


@pytest.mark.parametrize("authorization", [True, False], ids=["with-token", "without-token"])
def test_a_body_of_unknown_length_is_never_read_past_the_limit(
    testapp, app_settings, authorization
):
    """Under a server that leaves the limit to the app (gunicorn), pyramid_retry would copy a
    chunked body to a temporary file, whole, before routing and authentication: an anonymous
    client could fill the disk. The app reads at most the limit and one byte."""
    limit = int(app_settings["myservice.max_body_bytes"])

    response, body_input = post_of_unknown_length(
        testapp, b'{"username": "ada",', 16 * limit, authorization
    )

    assert response.status_code == (413 if authorization else 401)
    assert response.content_type == "application/problem+json"
    assert body_input.served <= limit + 1


def test_a_body_of_unknown_length_within_the_limit_is_served(testapp, app_settings):
    limit = int(app_settings["myservice.max_body_bytes"])

    response, _ = post_of_unknown_length(testapp, VALID, limit)

    assert response.status_code == 201, response.body
    assert testapp.get("/users?username=ada").json["items"][0]["email"] == "ada@example.com"


# -- problem documents ---------------------------------------------------------------------


def test_unknown_route_is_a_404_problem(testapp):
    problem = assert_problem(testapp.get("/nothing/here", status=404), 404)
    assert problem["title"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/users", "GET, HEAD, POST"),
        ("DELETE", "/users", "GET, HEAD, POST"),
        ("POST", "/users/1", "DELETE, GET, HEAD, PATCH"),
        ("PUT", "/users/1", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_a_known_route_with_an_unsupported_method_is_405_with_allow(testapp, method, path, allow):
    response = testapp.request(path, method=method, status=405)
    assert_problem(response, 405)
    assert response.headers["Allow"] == allow


def test_problems_never_reveal_internals(testapp):
    responses = [
        testapp.put("/users", status=405),
        testapp.get("/users/abc", status=404),
        post(testapp, b"{", status=400),
        post(testapp, b'{"username": 1}', status=422),
        testapp.get("/users?limit=x", status=400),
    ]
    for response in responses:
        text = response.text
        for leak in (
            "Traceback",
            "predicate",
            "sqlalchemy",
            "SELECT",
            "ValidationError",
            "UserCreate",
            "pydantic",
            "<class",
        ):
            assert leak not in text


@pytest.mark.parametrize("url", ["/users?limit=%FF", "/users/%FF", "/%FF%FE"])
def test_a_url_that_is_not_utf8_is_400(testapp, url, log_lines):
    assert_problem(testapp.get(url, status=400), 400)
    # Logged as sent (a paging parameter's value is logged; a filter's would be ***).
    assert any(f"GET {url} 400" in line for line in log_lines())


# -- query parameters ----------------------------------------------------------------------


def test_every_operation_refuses_a_query_parameter_it_does_not_define(app, testapp):
    """Whatever the operation, with or without parameters of its own: 400 naming it, before
    the view does anything (a POST creates nothing)."""
    document = testapp.get("/openapi.json").json
    for path, method in sorted(served_operations(app)):
        url = path.replace("{id}", "1").replace("{user_id}", "1")
        response = testapp.request(
            f"{url}?usernme=ada",
            method=method.upper(),
            environ={"REMOTE_ADDR": "127.0.0.1"},  # /metrics answers its own host
            expect_errors=True,
        )
        assert response.status_code == 400, (method, path, response.text)
        problem = assert_problem(response, 400)
        assert problem["errors"] == [
            {"parameter": "usernme", "detail": "is not a parameter of this operation"}
        ], (method, path)
        assert "400" in document["paths"][path][method]["responses"], (method, path)
    assert testapp.get("/users?username=ada").json["items"] == []  # nothing was created


def test_an_unknown_parameter_is_named_beside_the_bad_known_ones(testapp):
    response = testapp.get("/users?limit=0&usernme=ada&cursor=", status=400)

    assert sorted(assert_problem(response, 400)["errors"], key=lambda e: e["parameter"]) == [
        {"parameter": "cursor", "detail": "must have 1 or more characters"},
        {"parameter": "limit", "detail": "must be at least 1"},
        {"parameter": "usernme", "detail": "is not a parameter of this operation"},
    ]


def test_a_semicolon_is_part_of_a_value_not_a_separator(testapp):
    # WebOb's request.GET would read ?name=R;D as the name "R" and a parameter "D".
    created = testapp.post_json("/groups", {"name": "R;D ops"}, status=201).json

    found = testapp.get("/groups?name=R;D+ops&limit=5", status=200).json["items"]

    assert [group["id"] for group in found] == [created["id"]]


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("/users?limit=201", "must be at most 200"),
        ("/users?limit=0", "must be at least 1"),
        ("/users?limit=x", "must be an integer"),
        ("/changes?limit=1001", "must be at most 1000"),
        ("/changes?after=-1", "must be at least 0"),
    ],
)
def test_limit_errors_speak_in_one_voice(testapp, url, detail):
    [error] = assert_problem(testapp.get(url, status=400), 400)["errors"]

    assert error["detail"] == detail


@pytest.mark.parametrize(
    ("path", "body", "pointer", "detail"),
    [
        (
            "/users",
            {**ADA, "full_name": "x" * 201},
            "/full_name",
            "must have at most 200 characters",
        ),
        ("/groups", {"name": ""}, "/name", "must have 1 or more characters"),
        ("/groups", {"name": "ops", "max_members": -1}, "/max_members", "must be at least 0"),
    ],
)
def test_body_length_and_range_errors_speak_in_the_same_voice(testapp, path, body, pointer, detail):
    response = testapp.post_json(path, body, status=422)

    assert assert_problem(response, 422)["errors"] == [{"pointer": pointer, "detail": detail}]


# -- X-Request-ID --------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed(testapp):
    rid = "abc-123_X.y:z"
    assert testapp.get("/health", headers={"X-Request-ID": rid}).headers["X-Request-ID"] == rid


@pytest.mark.parametrize("rid", ["", "has space", "x" * 129, "semi;colon", "é"])
def test_an_invalid_request_id_is_replaced_by_a_generated_one(testapp, rid):
    returned = testapp.get("/health", headers={"X-Request-ID": rid}).headers["X-Request-ID"]
    assert returned and returned != rid and len(returned) <= 128


def test_every_response_carries_a_request_id_errors_too(testapp):
    ids = {
        testapp.get("/health").headers["X-Request-ID"],
        testapp.get("/nope", status=404).headers["X-Request-ID"],
        testapp.put("/users", status=405).headers["X-Request-ID"],
        post(testapp, b"{", status=400).headers["X-Request-ID"],
        post(testapp, b"{}", status=422).headers["X-Request-ID"],
    }
    assert len(ids) == 5  # generated ids are fresh per request


def test_log_lines_about_a_request_carry_its_id(testapp, log_lines):
    testapp.get("/health", headers={"X-Request-ID": "trace-me-42"})
    assert any(
        line.startswith("[trace-me-42] INFO [myservice.access] GET /health 200")
        for line in log_lines()
    )


def test_every_request_is_of_one_class_built_once_with_its_request_methods(app_settings, token):
    """Pyramid would build a class per request for the reified request methods
    (myservice/edge/requestclass.py): the classes are kept, so each would be a new object."""
    seen = []

    def note_class(request):
        seen.append(type(request))
        return {"id": request.request_id, "tm": request.tm is not None}

    client = with_token(app_with_views(app_settings, {"/test/class": note_class}), token)
    for _ in range(3):
        assert client.get("/test/class").json["tm"] is True
    client.get("/users?limit=1", status=200)  # dbsession and authentication, from the class

    assert all(cls is seen[0] for cls in seen)
    assert {"request_id", "dbsession", "authentication", "tm"} <= set(vars(seen[0]))
