"""Authentication and authorization: bearer tokens, their scopes, and the headers of answers.

The tokens here are committed to the session's database before the test's first request
(``new_token``), so the test's own connection sees them.
"""

from datetime import timedelta

import pytest
import webtest

from myservice.data.models.meta import utcnow
from myservice.data.models.token import revoke_token
from myservice.data.scripts import session_scope
from tests.support.app import app_with_views, served_operations, with_token
from tests.support.client import bearer
from tests.support.database import new_token
from tests.support.factories import ADA, new_user, unique
from tests.support.problems import assert_problem

#: /metrics is public to its own host in development.ini's mode (tests/test_metrics.py: who may
#: scrape; production.ini asks for a token, tests/test_deployment.py).
PUBLIC = {
    ("/health", "get"),
    ("/health/ready", "get"),
    ("/openapi.json", "get"),
    ("/docs", "get"),
    ("/metrics", "get"),
}
CHALLENGE = 'Bearer realm="myservice"'


@pytest.fixture
def read_only(db_url):
    return new_token(db_url, unique("read-only"), ["read"])


@pytest.fixture
def write_only(db_url):
    return new_token(db_url, unique("write-only"), ["write"])


@pytest.fixture
def revoked(db_url):
    name = unique("revoked")
    secret = new_token(db_url, name, ["read", "write"])
    with session_scope({"sqlalchemy.url": db_url}) as session:
        revoke_token(session, name)
    return secret


@pytest.fixture
def expired(db_url):
    return new_token(db_url, unique("expired"), ["read", "write"], utcnow() - timedelta(seconds=1))


def assert_unauthorized(response, error=None):
    problem = assert_problem(response, 401)
    expected = CHALLENGE if error is None else f'{CHALLENGE}, error="{error}"'
    assert response.headers["WWW-Authenticate"] == expected
    return problem


# -- 401: no valid token -------------------------------------------------------------------


def test_a_request_without_a_token_is_401_with_a_bearer_challenge_and_no_error(anonymous):
    problem = assert_unauthorized(anonymous.get("/users/1", status=401))
    assert "Authorization: Bearer" in problem["detail"]


def test_an_empty_authorization_header_counts_as_no_token(testapp):
    assert_unauthorized(testapp.get("/users", headers={"Authorization": " "}, status=401))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer not-a-token",
        "Bearer ms_short",
        "Basic dXNlcjpwYXNz",
        "Bearer ms_" + "A" * 43 + " extra",
        "Bearer ms_" + "A" * 42 + "'",
        "ms_" + "A" * 43,
    ],
)
def test_a_malformed_authorization_header_is_401_invalid_token(testapp, header):
    for _ in range(2):  # the second time as the process remembers the header
        assert_unauthorized(
            testapp.get("/users", headers={"Authorization": header}, status=401), "invalid_token"
        )


def test_an_unknown_token_is_401_invalid_token(testapp):
    response = testapp.get("/users", headers=bearer("ms_" + "B" * 43), status=401)
    assert_unauthorized(response, "invalid_token")


def test_a_revoked_token_is_401_invalid_token(revoked, testapp):
    response = testapp.get("/users", headers=bearer(revoked), status=401)
    assert assert_unauthorized(response, "invalid_token")["detail"] == "the token has been revoked"


def test_an_expired_token_is_401_invalid_token(expired, testapp):
    response = testapp.get("/users", headers=bearer(expired), status=401)
    assert assert_unauthorized(response, "invalid_token")["detail"] == "the token has expired"


def test_the_scheme_name_is_case_insensitive(testapp, token):
    testapp.get("/users", headers={"Authorization": f"bearer {token}"}, status=200)


def test_a_remembered_token_admits_its_own_header_only(testapp, token):
    """What a process remembers is keyed by the header as it came: a header one character off
    a remembered one is another header, refused."""
    testapp.get("/users", headers=bearer(token), status=200)
    other = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert_unauthorized(testapp.get("/users", headers=bearer(other), status=401), "invalid_token")
    testapp.get("/users", headers=bearer(token), status=200)
    testapp.get("/users", headers={"Authorization": f"Bearer  {token} "}, status=200)


def test_a_refused_write_leaves_no_trace(testapp, anonymous):
    assert_unauthorized(anonymous.post_json("/users", ADA, status=401))
    assert testapp.get("/users?username=ada").json["items"] == []


# -- 403: the token lacks the scope --------------------------------------------------------


def test_a_read_only_token_reads_but_cannot_write(read_only, testapp):
    user = new_user(testapp)
    testapp.get(f"/users/{user['id']}", headers=bearer(read_only), status=200)
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "x"}, headers=bearer(read_only), status=403
    )
    problem = assert_problem(response, 403)
    assert "lacks the scope 'write'" in problem["detail"]
    assert response.headers["WWW-Authenticate"] == (
        f'{CHALLENGE}, error="insufficient_scope", scope="write"'
    )
    assert testapp.get(f"/users/{user['id']}").json["full_name"] == ""


def test_a_write_only_token_writes_but_cannot_read(write_only, testapp):
    created = testapp.post_json("/users", ADA, headers=bearer(write_only), status=201).json
    response = testapp.get(f"/users/{created['id']}", headers=bearer(write_only), status=403)
    assert response.headers["WWW-Authenticate"].endswith('scope="read"')


# -- which views are protected ------------------------------------------------------------


def test_every_operation_but_the_public_ones_needs_a_token(app, anonymous):
    protected = served_operations(app) - PUBLIC
    assert protected, "the app serves no protected operation"
    for path, method in sorted(protected):
        url = path.replace("{id}", "1").replace("{user_id}", "1")
        response = anonymous.request(url, method=method.upper(), expect_errors=True)
        assert response.status_code == 401, (method, path)


def test_every_get_needs_the_read_scope_and_every_change_the_write_scope(
    app, read_only, write_only, testapp
):
    for path, method in sorted(served_operations(app) - PUBLIC):
        url = path.replace("{id}", "1").replace("{user_id}", "1")
        lacking = write_only if method == "get" else read_only
        response = testapp.request(
            url, method=method.upper(), headers=bearer(lacking), expect_errors=True
        )
        assert response.status_code == 403, (method, path)


@pytest.mark.parametrize(("path", "method"), sorted(PUBLIC))
def test_health_readiness_the_openapi_document_and_its_page_are_public(anonymous, path, method):
    anonymous.get(path, extra_environ={"REMOTE_ADDR": "127.0.0.1"}, status=200)


def test_a_view_added_without_a_permission_needs_the_write_scope(app_settings, read_only, token):
    service = app_with_views(app_settings, {"/later": lambda request: {"ok": True}})
    assert_unauthorized(webtest.TestApp(service).get("/later", status=401))
    with_token(service, read_only).get("/later", status=403)
    assert with_token(service, token).get("/later", status=200).json == {"ok": True}


# -- idempotency keys belong to their token -------------------------------------------------


def test_the_same_idempotency_key_from_two_tokens_is_two_requests(testapp, db_url):
    other = new_token(db_url, unique("other"), ["read", "write"])
    key = {"Idempotency-Key": "shared-key"}
    first = testapp.post_json("/users", ADA, headers=key, status=201)
    body = {"username": "grace", "email": "grace@example.com"}
    second = testapp.post_json("/users", body, headers={**key, **bearer(other)}, status=201)
    assert "Idempotent-Replayed" not in second.headers
    assert second.json["id"] != first.json["id"]
    replayed = testapp.post_json("/users", ADA, headers=key, status=201)
    assert replayed.headers["Idempotent-Replayed"] == "true"


# -- headers on every answer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [("/users", {}, 200), ("/users/999999", {}, 404), ("/users", {"Authorization": " "}, 401)],
)
def test_answers_are_not_stored_by_caches_nor_sniffed(testapp, path, headers, status):
    response = testapp.get(path, headers=headers, status=status)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_cors_is_off_by_default(testapp):
    origin = {"Origin": "https://app.example.com"}
    assert "Access-Control-Allow-Origin" not in testapp.get("/users", headers=origin).headers
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    testapp.options("/users", headers=preflight, status=405)


@pytest.fixture
def cors_app(app_settings, token):
    settings = {**app_settings, "myservice.cors_origins": "https://app.example.com"}
    return with_token(app_with_views(settings, {}), token)


def test_cors_answers_a_preflight_from_a_listed_origin(cors_app):
    headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PATCH"}
    response = cors_app.options("/users/1", headers=headers, status=204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Origin" in response.headers["Vary"]


def test_cors_decorates_answers_and_errors_for_a_listed_origin_only(cors_app):
    listed = {"Origin": "https://app.example.com"}
    ok = cors_app.get("/users", headers=listed, status=200)
    refused = cors_app.get("/users", headers={**listed, "Authorization": " "}, status=401)
    for response in (ok, refused):
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert "WWW-Authenticate" in response.headers["Access-Control-Expose-Headers"]
    other = cors_app.get("/users", headers={"Origin": "https://evil.example"}, status=200)
    assert "Access-Control-Allow-Origin" not in other.headers
