"""Authentication and authorization: bearer tokens, their scopes, and the headers of answers.

The tokens here are committed to the session's database before the test's first request
(``new_token``), so the test's own connection sees them.
"""

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import webtest
from sqlalchemy import event, select, update

from myservice.data.db import SQLITE_BUSY_TIMEOUT_MS
from myservice.data.models.meta import utcnow
from myservice.data.models.token import LAST_USED_RESOLUTION, TOKENS, revoke_token
from tests.conftest import (
    ROOT,
    app_with_views,
    bearer,
    new_token,
    short_lived_engine,
    with_token,
)
from tests.realserver import call
from tests.test_openapi import served_operations
from tests.test_users import ADA, assert_problem, create

#: /metrics is public to its own host in its default mode (tests/test_metrics.py: who may scrape).
PUBLIC = {
    ("/health", "get"),
    ("/health/ready", "get"),
    ("/openapi.json", "get"),
    ("/docs", "get"),
    ("/metrics", "get"),
}
CHALLENGE = 'Bearer realm="myservice"'


def named(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def read_only(db_url):
    return new_token(db_url, named("read-only"), ["read"])


@pytest.fixture
def write_only(db_url):
    return new_token(db_url, named("write-only"), ["write"])


@pytest.fixture
def revoked(db_url):
    name = named("revoked")
    secret = new_token(db_url, name, ["read", "write"])
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        revoke_token(connection, name)
    return secret


@pytest.fixture
def expired(db_url):
    return new_token(db_url, named("expired"), ["read", "write"], utcnow() - timedelta(seconds=1))


def assert_unauthorized(response, error=None):
    problem = assert_problem(response, 401)
    expected = CHALLENGE if error is None else f'{CHALLENGE}, error="{error}"'
    assert response.headers["WWW-Authenticate"] == expected
    return problem


# -- 401: no valid token -------------------------------------------------------------------


@pytest.fixture
def anonymous(testapp):
    """The test's app, its requests without any ``Authorization`` header."""
    return webtest.TestApp(testapp.app)


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


def test_a_refused_write_leaves_no_trace(testapp, anonymous):
    assert_unauthorized(anonymous.post_json("/users", ADA, status=401))
    assert testapp.get("/users?username=ada").json["items"] == []


# -- 403: the token lacks the scope --------------------------------------------------------


def test_a_read_only_token_reads_but_cannot_write(read_only, testapp):
    user = create(testapp).json
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


# -- how the token is looked up --------------------------------------------------------------


@pytest.fixture
def statements(app):
    """The SQL statements the app sends while the test runs."""
    sent = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(connection, cursor, statement, *args):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_the_token_is_looked_up_once_per_request(testapp, statements):
    testapp.post_json("/users", ADA, headers={"Idempotency-Key": "once"}, status=201)
    lookups = [s for s in statements if s.lstrip().startswith("SELECT") and "api_tokens" in s]
    assert len(lookups) == 1


def test_a_request_without_a_token_sends_no_sql(anonymous, statements):
    anonymous.get("/users", status=401)
    anonymous.post_json("/users", ADA, status=401)
    assert statements == []


def last_used(testapp, app, name):
    connection = app.registry["dbsession_factory"].kw["bind"]
    return connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))


def set_last_used(app, name, when):
    connection = app.registry["dbsession_factory"].kw["bind"]
    connection.execute(update(TOKENS).where(TOKENS.c.name == name).values(last_used_at=when))


def test_last_used_is_written_at_most_once_a_minute(testapp, app, statements):
    long_ago = utcnow() - 2 * LAST_USED_RESOLUTION
    set_last_used(app, "tests", long_ago)
    statements.clear()

    testapp.get("/users", status=200)
    noted = last_used(testapp, app, "tests")
    testapp.get("/users", status=200)
    testapp.post_json("/users", ADA, status=201)

    assert noted > long_ago
    assert last_used(testapp, app, "tests") == noted  # the next requests wrote nothing
    updates = [s for s in statements if s.lstrip().startswith("UPDATE api_tokens")]
    assert len(updates) == 1


# -- idempotency keys belong to their token -------------------------------------------------


def test_the_same_idempotency_key_from_two_tokens_is_two_requests(testapp, db_url):
    other = new_token(db_url, named("other"), ["read", "write"])
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


# -- the myservice-token command -------------------------------------------------------------


def myservice_token(db_url, *args):
    return subprocess.run(
        [Path(sys.executable).with_name("myservice-token"), *args],
        env={**os.environ, "DATABASE_URL": db_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_creates_a_token_that_works_and_lists_and_revokes_it(db_url, app):
    name = named("cli")
    created = myservice_token(
        db_url, "create", "development.ini", "--name", name, "--scope", "read"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n"  # the token alone: TOKEN=$(myservice-token ...)
    client = with_token(app, secret)
    client.get("/users", status=200)
    client.post_json("/users", ADA, status=403)

    listed = myservice_token(db_url, "list", "development.ini")
    assert listed.returncode == 0
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(name + "\t")]
    assert line.split("\t")[1] == "read" and line.endswith("active")
    assert secret not in listed.stdout

    revoked = myservice_token(db_url, "revoke", "development.ini", name)
    assert revoked.returncode == 0
    client.get("/users", status=401)
    assert myservice_token(db_url, "list", "development.ini").stdout.count(f"{name}\t") == 1


def test_the_command_sets_an_expiry(db_url):
    name = named("expiring")
    args = ("create", "development.ini", "--name", name, "--scope", "read", "--expires-in", "30d")
    assert myservice_token(db_url, *args).returncode == 0
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        expires_at = connection.scalar(select(TOKENS.c.expires_at).where(TOKENS.c.name == name))
    assert timedelta(days=29) < expires_at - utcnow() <= timedelta(days=30)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("create", "development.ini", "--name", "x"), 2),  # no scope
        (("create", "development.ini", "--name", "x", "--scope", "admin"), 2),
        (("create", "development.ini", "--name", "bad name", "--scope", "read"), 2),
        (("create", "development.ini", "--name", "x", "--scope", "read", "--expires-in", "9y"), 2),
        (("create", "development.ini", "--name", "tests", "--scope", "read"), 1),  # taken
        (("revoke", "development.ini", "nobody-has-this-name"), 1),
        (("frobnicate", "development.ini"), 2),
        ((), 2),
    ],
)
def test_bad_arguments_give_a_one_line_error_and_a_failing_status(db_url, args, status):
    result = myservice_token(db_url, *args)
    assert result.returncode == status
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "error:" in line


def test_a_read_through_the_real_server_notes_the_tokens_use(server, db_url):
    name = named("noted")
    secret = new_token(db_url, name, ["read"])

    reply = call(server, "GET", "/users?limit=1", headers=bearer(secret))

    assert reply.status == 200
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        noted = connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))
    assert noted is not None and utcnow() - noted < LAST_USED_RESOLUTION


@contextmanager
def token_row_held(db_url, name):
    """A writer that holds what noting ``name``'s use needs: SQLite's write lock, or on
    PostgreSQL the token's row lock, until the block ends."""
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
            connection.execute(select(TOKENS.c.id).where(TOKENS.c.name == name).with_for_update())
        try:
            yield
        finally:
            connection.exec_driver_sql("ROLLBACK")


#: Seconds a read may take while a writer holds what noting its token's use needs. A read that
#: waited would take SQLite's whole busy timeout (5 s) before it gave up; on PostgreSQL it would
#: end in the watchdog's 503. Half the busy timeout tells the two apart with 2.5 s to spare for a
#: loaded machine (the read itself takes milliseconds): not a benchmark.
NEVER_WAITS = SQLITE_BUSY_TIMEOUT_MS / 1000 / 2


def test_a_read_never_waits_to_note_its_tokens_use(server, db_url):
    name = named("busy")
    secret = new_token(db_url, name, ["read"])

    with token_row_held(db_url, name):
        started = time.monotonic()
        reply = call(server, "GET", "/users?limit=1", headers=bearer(secret))
        elapsed = time.monotonic() - started

    assert reply.status == 200, reply.body  # not a 503 after SQLite's busy timeout
    assert elapsed < NEVER_WAITS, f"the read took {elapsed:.2f} s: it waited for the lock"
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        noted = connection.scalar(select(TOKENS.c.last_used_at).where(TOKENS.c.name == name))
    assert noted is None  # skipped: a later request notes it
