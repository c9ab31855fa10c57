"""The real server: ``pserve`` in a subprocess, spoken to over real HTTP.

What the in-process tests cannot show: waitress's threads and the connection pool under
concurrent requests, the log lines that reach stderr, the Location that a real Host header
makes absolute, and how a server whose database is down answers.

The server runs ``development.ini`` unchanged but for its port, on the session's database
(``DATABASE_URL``, the ``server`` fixture). Its requests really commit, so every row is deleted
at the end.
"""

import re
import uuid
from urllib.parse import urlsplit

import pytest

from tests.support.client import call, concurrently
from tests.support.contract import VALID_REQUEST_ID
from tests.support.factories import new_user, unique
from tests.support.problems import assert_problem
from tests.support.processes import free_port
from tests.support.servers import running_server
from tests.support.waiting import eventually

# -- users over HTTP --------------------------------------------------------------------------


def test_a_user_created_over_http_can_be_read_back(server):
    username = unique("Ada")
    body = {"username": username, "email": f"Ada.{username}@Example.org", "full_name": "Ada L."}

    created = call(server, "POST", "/users", body)

    assert created.status == 201, created.body
    assert created.headers["Content-Type"] == "application/json"
    user = created.json()
    assert created.headers["Location"] == f"{server.base_url}/users/{user['id']}"
    assert created.headers["ETag"] == '"1"'
    assert user["username"] == username.lower()
    assert user["email"] == f"Ada.{username}@example.org"  # normalized: the domain lower-cased
    assert user["full_name"] == "Ada L."
    assert user["version"] == 1
    assert user["created_at"].endswith("Z")
    assert user["updated_at"].endswith("Z")

    fetched = call(server, "GET", urlsplit(created.headers["Location"]).path)

    assert fetched.status == 200
    assert fetched.headers["ETag"] == '"1"'
    assert fetched.json() == user


# -- X-Request-ID and the log -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id", ["a", "A" * 128, "trace-7.b_c:9"], ids=["one-char", "128-chars", "punctuation"]
)
def test_a_valid_x_request_id_is_echoed(server, request_id):
    reply = call(server, "GET", "/health", headers={"X-Request-ID": request_id})

    assert reply.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["a" * 129, "x" * 200, "has space", "not/allowed", ""],
    ids=["129-chars", "200-chars", "space", "slash", "empty"],
)
def test_an_invalid_x_request_id_is_replaced_by_a_generated_one(server, request_id):
    reply = call(server, "GET", "/health", headers={"X-Request-ID": request_id})

    generated = reply.headers["X-Request-ID"]
    assert generated != request_id
    assert VALID_REQUEST_ID.fullmatch(generated)


def test_a_request_without_x_request_id_gets_a_new_one_each_time(server):
    first = call(server, "GET", "/health").headers["X-Request-ID"]
    second = call(server, "GET", "/health").headers["X-Request-ID"]

    assert VALID_REQUEST_ID.fullmatch(first)
    assert VALID_REQUEST_ID.fullmatch(second)
    assert first != second


def logged(server, matches):
    """The one line of ``server``'s log that ``matches``, once written: an access line is
    handed to the log within a fraction of a second of its response (edge.logwriting)."""
    eventually(lambda: any(matches(line) for line in server.log_lines()), "the access line")
    [line] = [line for line in server.log_lines() if matches(line)]
    return line


def test_the_access_log_line_of_a_request_carries_its_echoed_request_id(server):
    request_id = f"log-{uuid.uuid4().hex}"
    username = unique("logged")
    body = {"username": username, "email": f"{username}@example.org"}

    reply = call(server, "POST", "/users", body, headers={"X-Request-ID": request_id})

    assert reply.status == 201
    access = re.compile(rf"\[myservice\.access\] \[{request_id}\] POST /users 201 ")
    logged(server, access.search)


def test_the_access_log_line_of_a_request_carries_the_request_id_generated_for_it(server):
    invalid = f"not valid {uuid.uuid4().hex}"
    user = new_user(server)

    reply = call(server, "GET", f"/users/{user['id']}", headers={"X-Request-ID": invalid})

    generated = reply.headers["X-Request-ID"]
    access = re.compile(rf"\[myservice\.access\] \[{generated}\] GET /users/{user['id']} 200 ")
    logged(server, access.search)
    assert [line for line in server.log_lines() if invalid in line] == []


def test_the_access_log_shows_no_filter_value_only_the_paging_parameters(server):
    """A filter's value is personal data (an email, a username): the log keeps its name only."""
    user = new_user(server)
    request_id = f"log-{uuid.uuid4().hex}"
    query = f"email={user['email']}&username={user['username']}&limit=1"

    reply = call(server, "GET", f"/users?{query}", headers={"X-Request-ID": request_id})

    assert [item["id"] for item in reply.json()["items"]] == [user["id"]]
    line = logged(server, lambda line: request_id in line)
    assert " GET /users?email=***&username=***&limit=1 200 " in line
    assert user["username"] not in "\n".join(server.log_lines())


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_patches_of_one_user_all_succeed_and_none_is_lost(server):
    path = f"/users/{new_user(server)['id']}"
    names = [f"Name {n}" for n in range(8)]

    replies = concurrently(lambda name: call(server, "PATCH", path, {"full_name": name}), names)

    assert [reply.status for reply in replies] == [200] * 8, [
        reply.body for reply in replies if reply.status != 200
    ]
    versions = {reply.json()["version"]: reply.json()["full_name"] for reply in replies}
    assert sorted(versions) == list(range(2, 10))  # each PATCH saw the one before it
    final = call(server, "GET", path).json()
    assert final["version"] == 1 + 8
    assert final["full_name"] == versions[9]


def test_concurrent_creates_of_one_username_make_exactly_one_user(server):
    username = unique("same")
    bodies = [{"username": username, "email": f"{username}.{n}@example.org"} for n in range(8)]

    replies = concurrently(lambda body: call(server, "POST", "/users", body), bodies)

    assert sorted(reply.status for reply in replies) == [201] + [409] * 7, [
        reply.body for reply in replies
    ]
    [created] = [reply.json() for reply in replies if reply.status == 201]
    for reply in replies:
        if reply.status != 201:
            assert_problem(reply, 409)
    same = call(server, "GET", f"/users?username={username}").json()["items"]
    assert [user["id"] for user in same] == [created["id"]]


def test_concurrent_creates_of_distinct_users_all_succeed_and_are_all_listed(server):
    usernames = [unique(f"many{n}") for n in range(20)]
    bodies = [{"username": name, "email": f"{name}@example.org"} for name in usernames]

    replies = concurrently(lambda body: call(server, "POST", "/users", body), bodies)

    assert [reply.status for reply in replies] == [201] * 20, [
        reply.body for reply in replies if reply.status != 201
    ]
    created = {reply.json()["id"]: reply.json()["username"] for reply in replies}
    assert sorted(created.values()) == sorted(usernames)  # 20 users, 20 distinct ids
    listing = call(server, "GET", "/users?limit=200").json()
    assert listing["next_cursor"] is None  # the one page holds every user
    listed = {user["id"]: user["username"] for user in listing["items"]}
    assert created.items() <= listed.items()


# -- the database is down ---------------------------------------------------------------------


def test_while_the_database_is_down_health_answers_and_everything_else_is_a_fast_503(tmp_path):
    nobody_listens = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"

    with running_server(tmp_path, nobody_listens) as down:
        # Every call below gives up after CLIENT_TIMEOUT seconds: a hang fails the test.
        health = call(down, "GET", "/health")
        ready = call(down, "GET", "/health/ready")
        create = call(down, "POST", "/users", {"username": "ada", "email": "ada@example.org"})
        read = call(down, "GET", "/users/1")

    assert health.status == 200
    assert health.json() == {"status": "ok"}
    for reply in (ready, create, read):
        problem = assert_problem(reply, 503)
        assert int(reply.headers["Retry-After"]) > 0
        assert "OperationalError" not in problem.get("detail", "")
        assert "psycopg" not in reply.body.decode()
