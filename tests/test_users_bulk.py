"""POST /users/bulk: all the users in one transaction, or none of them."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, insert, select

from myservice.data.models import User
from tests.support.app import with_token
from tests.support.contract import USER_FIELDS
from tests.support.database import short_lived_engine
from tests.support.locks import LockWait
from tests.support.problems import assert_problem


def users(count, start=0):
    return [
        {"username": f"bulk{n:04}", "email": f"bulk{n}@example.org"}
        for n in range(start, start + count)
    ]


def stored_usernames(testapp):
    return [user["username"] for user in testapp.get("/users?limit=200").json["items"]]


def test_bulk_create_is_201_with_every_user_in_request_order(testapp):
    body = [{"username": "Zed", "email": "z@example.org", "full_name": "Zed"}, *users(3)]
    response = testapp.post_json("/users/bulk", {"users": body}, status=201)
    created = response.json["items"]
    assert [u["username"] for u in created] == ["zed", "bulk0000", "bulk0001", "bulk0002"]
    assert all(set(user) == USER_FIELDS for user in created)
    assert [u["version"] for u in created] == [1] * 4
    assert [u["full_name"] for u in created] == ["Zed", "", "", ""]
    assert created[0]["created_at"] == created[0]["updated_at"]
    for user in created:
        assert testapp.get(f"/users/{user['id']}").json == user


def test_bulk_create_of_no_users_is_201_with_no_items(testapp):
    assert testapp.post_json("/users/bulk", {"users": []}, status=201).json == {"items": []}


def test_bulk_create_is_one_multi_row_insert(testapp, app):
    inserts = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO USERS"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        testapp.post_json("/users/bulk", {"users": users(50)}, status=201)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(inserts) == 1
    assert "RETURNING" in inserts[0].upper()


@pytest.mark.parametrize(
    ("bad", "pointer"),
    [
        ({"username": "x", "email": "x@example.org"}, "/users/3/username"),
        ({"username": "good1", "email": "nope"}, "/users/3/email"),
        ({"username": "good1"}, "/users/3/email"),
        ({"username": "good1", "email": "g@example.org", "id": 1}, "/users/3/id"),
        ("not an object", "/users/3"),
    ],
)
def test_an_invalid_user_is_422_naming_the_first_bad_one_and_nothing_is_created(
    testapp, bad, pointer
):
    body = [*users(3), bad, {"username": "y", "email": "bad"}]
    problem = assert_problem(testapp.post_json("/users/bulk", {"users": body}, status=422), 422)
    assert [error["pointer"] for error in problem["errors"]] == [pointer]
    assert stored_usernames(testapp) == []


@pytest.mark.parametrize(
    ("body", "pointer"),
    [({}, "/users"), ({"users": {}}, "/users"), ({"users": [], "more": 1}, "/more")],
)
def test_a_body_without_a_users_array_is_422(testapp, body, pointer):
    problem = assert_problem(testapp.post_json("/users/bulk", body, status=422), 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]


def test_a_duplicate_inside_the_batch_is_409_naming_the_later_one_and_nothing_is_created(testapp):
    body = users(4)
    body[3] = {"username": "BULK0001", "email": "other@example.org"}
    problem = assert_problem(testapp.post_json("/users/bulk", {"users": body}, status=409), 409)
    assert problem["errors"][0]["pointer"] == "/users/3/username"
    body[3] = {"username": "other", "email": "BULK1@example.org"}
    problem = assert_problem(testapp.post_json("/users/bulk", {"users": body}, status=409), 409)
    assert problem["errors"][0]["pointer"] == "/users/3/email"
    assert stored_usernames(testapp) == []


def test_a_clash_with_a_stored_user_is_409_naming_the_first_and_nothing_is_created(testapp):
    testapp.post_json("/users", {"username": "taken", "email": "taken@example.org"}, status=201)
    body = [*users(2), {"username": "TAKEN", "email": "new@example.org"}, *users(2, start=5)]
    body[4]["email"] = "Taken@Example.org"
    problem = assert_problem(testapp.post_json("/users/bulk", {"users": body}, status=409), 409)
    assert problem["errors"] == [{"pointer": "/users/2/username", "detail": "username is taken"}]
    assert stored_usernames(testapp) == ["taken"]


def test_more_users_than_max_bulk_is_422_before_any_validation(testapp, app):
    limit = app.registry.settings["myservice.max_bulk"]
    body = [{"username": "!"}] * (limit + 1)
    problem = assert_problem(testapp.post_json("/users/bulk", {"users": body}, status=422), 422)
    assert problem["errors"] == [
        {"pointer": "/users", "detail": f"must hold at most {limit} users"}
    ]


def test_exactly_max_bulk_users_are_created(testapp, app):
    limit = app.registry.settings["myservice.max_bulk"]
    created = testapp.post_json("/users/bulk", {"users": users(limit)}, status=201).json
    assert len(created["items"]) == limit


def test_bulk_create_refuses_other_media_types_and_broken_json(testapp):
    testapp.post("/users/bulk", b"users", content_type="text/csv", status=415)
    testapp.post("/users/bulk", b'{"users": [', content_type="application/json", status=400)


# -- real commits --------------------------------------------------------------------------


@pytest.fixture
def committing_app(app, token, empty_tables):
    """The app on its own engine: each request really commits (rows deleted afterwards)."""
    return with_token(app, token)


def committed_usernames(db_url):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return connection.scalars(select(User.username).order_by(User.id)).all()


def test_bulk_created_users_are_committed_and_seen_by_later_requests(committing_app, db_url):
    created = committing_app.post_json("/users/bulk", {"users": users(3)}, status=201).json
    assert committed_usernames(db_url) == ["bulk0000", "bulk0001", "bulk0002"]
    for user in created["items"]:
        assert committing_app.get(f"/users/{user['id']}").json == user


def test_a_rejected_bulk_create_commits_nothing(committing_app, db_url):
    body = [*users(2), {"username": "bulk0000", "email": "again@example.org"}]
    committing_app.post_json("/users/bulk", {"users": body}, status=409)
    committing_app.post_json("/users/bulk", {"users": [*users(2), {}]}, status=422)
    assert committed_usernames(db_url) == []


def test_a_username_committed_while_a_bulk_create_waits_is_a_409_naming_its_user(
    committing_app, app, db_url
):
    """On PostgreSQL the bulk INSERT waits on the racer's row and its SAVEPOINT catches the
    violation; on SQLite the bulk request waits for the write lock at BEGIN IMMEDIATE, so the
    clash query finds the committed racer instead. Either way: a 409 naming the user."""
    racer = {"username": "bulk0001", "email": "racer@example.org", "version": 1}
    app_engine = app.registry["dbsession_factory"].kw["bind"]
    with (
        short_lived_engine(db_url) as engine,
        engine.connect() as other,
        LockWait(other, app_engine) as lock_wait,
    ):
        transaction = other.begin()
        other.execute(insert(User).values(**racer))  # holds the username (and, on SQLite, the
        with ThreadPoolExecutor(max_workers=1) as pool:  # write lock) until it commits
            reply = pool.submit(
                committing_app.post_json, "/users/bulk", {"users": users(3)}, status=409
            )
            # PostgreSQL: the INSERT waits on the unique index (the IntegrityError path);
            # SQLite: BEGIN IMMEDIATE waits for the write lock.
            lock_wait.wait_until_waiting(reply)
            transaction.commit()
            problem = assert_problem(reply.result(timeout=20), 409)
    assert problem["errors"] == [{"pointer": "/users/1/username", "detail": "username is taken"}]
    assert committed_usernames(db_url) == ["bulk0001"]
