"""Idempotency-Key on POST /users, /users/bulk and /groups: a retry replays the first response
and does no work again."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pyramid.exceptions import ConfigurationError
from sqlalchemy import func, select, update

import myservice
from myservice.api.idempotency import PURGE_PER_CLAIM
from myservice.data.models import IdempotencyKey, User
from myservice.data.models.meta import utcnow
from myservice.data.models.token import ApiToken
from tests.support.client import call, concurrently
from tests.support.database import add_keys, short_lived_engine, stored_keys
from tests.support.factories import ADA, unique, user_body
from tests.support.feed import feed, feed_head
from tests.support.paths import ROOT
from tests.support.problems import assert_problem

KEYS = IdempotencyKey.__table__
TOKENS = ApiToken.__table__
DAY = timedelta(seconds=86400)


def post(testapp, body, key, status=201):
    return testapp.post_json("/users", body, headers={"Idempotency-Key": key}, status=status)


@pytest.fixture
def connection(testapp, app):
    """The connection the test's requests run on (inside its rolled-back transaction)."""
    return app.registry["dbsession_factory"].kw["bind"]


def user_count(connection):
    return connection.execute(select(func.count()).select_from(User)).scalar_one()


# -- replay and mismatch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/groups", {"name": "Ops", "max_members": 3}),
        ("/users/bulk", {"users": [ADA, {"username": "grace", "email": "g@example.com"}]}),
    ],
    ids=["groups", "users-bulk"],
)
def test_the_other_creating_posts_replay_too_and_create_nothing_more(testapp, path, body):
    start = feed_head(testapp)
    headers = {"Idempotency-Key": f"key-{path}"}
    first = testapp.post_json(path, body, headers=headers, status=201)
    again = testapp.post_json(path, body, headers=headers, status=201)
    other_body = json.loads(json.dumps(body).replace("Ops", "Dev").replace("grace", "hopper"))
    other = testapp.post_json(path, other_body, headers=headers, status=422)

    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "different request" in assert_problem(other, 422)["detail"]
    assert len(feed(testapp, start)) == (1 if path == "/groups" else 2)  # the first one only


def test_a_repeat_replays_the_first_status_headers_and_body_even_after_the_user_changed(
    testapp, connection
):
    start = feed_head(testapp)
    first = post(testapp, ADA, "key-1")
    testapp.patch_json(first.location, {"full_name": "changed since"})

    again = post(testapp, ADA, "key-1")

    assert again.status_code == 201
    assert again.body == first.body
    assert again.json["full_name"] == "Ada Lovelace" and again.json["version"] == 1
    assert again.location == first.location
    assert again.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert again.content_type == "application/json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert user_count(connection) == 1
    types = [change["type"] for change in feed(testapp, start)]
    assert types == ["user.created", "user.updated"]  # the replay did no work


def test_the_same_body_with_members_in_another_order_and_spacing_is_the_same_request(testapp):
    first = post(testapp, {"username": "ada", "email": "ada@example.com"}, "key-1")
    again = testapp.post(
        "/users",
        b'{ "email" : "ada@example.com",\n "username": "ada" }',
        headers={"Content-Type": "application/json", "Idempotency-Key": "key-1"},
        status=201,
    )
    assert again.body == first.body


def test_the_same_key_with_a_different_body_is_422_and_does_nothing(testapp, connection):
    post(testapp, ADA, "key-1")

    other = {**ADA, "username": "other", "email": "other@example.com"}
    problem = assert_problem(post(testapp, other, "key-1", status=422), 422)

    assert "Idempotency-Key" in problem["detail"]
    assert user_count(connection) == 1


def test_a_failed_request_stores_nothing_so_the_same_key_can_be_retried(testapp, connection):
    holder = testapp.post_json("/users", ADA, status=201)
    post(testapp, ADA, "key-1", status=409)  # the username is taken
    assert stored_keys(connection) == set()
    testapp.delete(holder.location, status=204)

    retried = post(testapp, ADA, "key-1")

    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json["id"] != holder.json["id"]
    assert stored_keys(connection) == {"key-1"}


def test_an_invalid_body_stores_nothing_and_its_key_serves_a_corrected_request(testapp):
    post(testapp, {"username": "!"}, "key-1", status=422)
    testapp.post(
        "/users",
        b"{",
        headers={"Content-Type": "application/json", "Idempotency-Key": "key-1"},
        status=400,
    )
    post(testapp, ADA, "key-1", status=201)


def test_without_the_header_nothing_is_stored(testapp, connection):
    testapp.post_json("/users", ADA, status=201)
    assert stored_keys(connection) == set()


# -- the header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there", "del\x7f", " ", " lead", "trail "],
    ids=["empty", "256", "é", "tab", "del", "space", "leading space", "trailing space"],
)
def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_400_naming_the_header(
    testapp, connection, key
):
    problem = assert_problem(post(testapp, ADA, key, status=400), 400)

    assert [error["header"] for error in problem["errors"]] == ["Idempotency-Key"]
    assert "Idempotency-Key" in problem["detail"]
    assert user_count(connection) == 0


def test_a_key_of_255_printable_characters_with_spaces_is_accepted(testapp):
    key = ("k y~!" * 51)[:255]
    first = post(testapp, ADA, key)
    assert post(testapp, ADA, key).body == first.body


# -- expiry --------------------------------------------------------------------------------


def test_a_key_is_kept_for_the_ttl_a_day_by_default(testapp, connection, app_settings):
    before = utcnow()
    post(testapp, ADA, "key-1")
    after = utcnow()

    assert app_settings["myservice.idempotency_ttl"] == "86400"  # development.ini says so
    expires_at = connection.execute(select(KEYS.c.expires_at)).scalar_one()
    assert before + DAY <= expires_at <= after + DAY


def test_an_expired_key_is_free_again(testapp, connection):
    first = post(testapp, ADA, "key-1")
    connection.execute(update(KEYS).values(expires_at=utcnow() - timedelta(seconds=1)))

    other = {"username": "other", "email": "other@example.com"}
    second = post(testapp, other, "key-1")  # not 422: the old request is forgotten

    assert second.json["id"] != first.json["id"]
    assert post(testapp, other, "key-1").body == second.body  # and the key now holds this one


def test_each_new_key_purges_a_few_expired_keys_oldest_first_and_no_more(
    testapp,
    connection,
    executed_sql,
):
    expired = add_keys(connection, utcnow() - DAY, PURGE_PER_CLAIM + 2)
    live = add_keys(connection, utcnow() + DAY, 1)

    post(testapp, ADA, "key-1")

    left = stored_keys(connection)
    assert len(left & set(expired)) == 2  # at most PURGE_PER_CLAIM per request
    assert set(live) | {"key-1"} <= left
    [purge] = [s for s, _ in executed_sql if s.lstrip().upper().startswith("DELETE")]
    assert "ORDER BY idempotency_keys.expires_at" in purge and "LIMIT" in purge.upper()


def test_a_ttl_that_is_not_positive_refuses_to_start(app_settings):
    with pytest.raises(ConfigurationError, match="idempotency_ttl"):
        myservice.main({}, **{**app_settings, "myservice.idempotency_ttl": "0"})


def test_myservice_purge_deletes_every_expired_key_and_keeps_live_ones(db_url, empty_tables):
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        add_keys(connection, utcnow() - DAY, 3)
        live = add_keys(connection, utcnow() + DAY, 2)

    result = subprocess.run(
        [Path(sys.executable).with_name("myservice-purge"), str(ROOT / "development.ini")],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "purged 3 expired idempotency keys"
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        assert stored_keys(connection) == set(live)


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_requests_with_one_new_key_create_one_user_and_all_get_its_response(server):
    body = user_body()
    name, key = body["username"], unique("key")

    replies = concurrently(
        lambda _: call(server, "POST", "/users", body, {"Idempotency-Key": key}), range(8)
    )

    assert [reply.status for reply in replies] == [201] * 8, [r.body for r in replies]
    assert len({reply.body for reply in replies}) == 1
    assert len({reply.headers["Location"] for reply in replies}) == 1
    replayed = [reply.headers.get("Idempotent-Replayed") == "true" for reply in replies]
    assert sum(replayed) == 7  # one request did the work, the others waited and replayed it
    users = call(server, "GET", f"/users?username={name}").json()["items"]
    assert [user["id"] for user in users] == [replies[0].json()["id"]]


def test_openapi_documents_the_header_on_post_users(testapp):
    document = testapp.get("/openapi.json").json

    parameters = document["paths"]["/users"]["post"]["parameters"]
    [header] = [p for p in parameters if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["schema"]["pattern"] == "^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"
