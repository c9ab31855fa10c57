"""The /users contract, row by row."""

from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event

from myservice.api.pagination import cursor_serializer

#: The members of a user, as API.md lists them.
USER_FIELDS = {"id", "username", "email", "full_name", "created_at", "updated_at", "version"}

ADA = {"username": "Ada", "email": "Ada@Example.com", "full_name": "Ada Lovelace"}


def create(testapp, **fields):
    body = {"username": "grace", "email": "grace@example.com", **fields}
    return testapp.post_json("/users", body, status=201)


def instant(timestamp):
    """An API timestamp as a datetime, to compare: as text "...:37Z" sorts after "...:37.5Z"."""
    return datetime.fromisoformat(timestamp)


def assert_problem(response, status):
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == status
    assert response.json["type"] and response.json["title"]
    return response.json


# -- POST /users ---------------------------------------------------------------------------


def test_create_returns_201_the_user_its_location_and_etag(testapp):
    response = testapp.post_json("/users", ADA, status=201)
    user = response.json
    assert set(user) == USER_FIELDS
    assert isinstance(user["id"], int) and user["id"] > 0
    assert user["username"] == "ada"  # stored and returned lower-cased
    assert user["email"] == "Ada@Example.com"
    assert user["full_name"] == "Ada Lovelace"
    assert user["version"] == 1
    assert user["created_at"].endswith("Z") and user["updated_at"].endswith("Z")
    assert response.location.endswith(f"/users/{user['id']}")
    assert response.headers["ETag"] == '"1"'
    assert response.content_type == "application/json"


def test_create_defaults_full_name_to_empty(testapp):
    assert create(testapp).json["full_name"] == ""


def test_create_with_a_null_full_name_takes_the_default(testapp):
    assert create(testapp, full_name=None).json["full_name"] == ""


def test_created_user_is_found_again(testapp):
    created = testapp.post_json("/users", ADA, status=201)
    assert testapp.get(created.location).json == created.json


def test_create_with_a_taken_username_is_409_in_any_case(testapp):
    testapp.post_json("/users", ADA, status=201)
    response = testapp.post_json(
        "/users", {"username": "ADA", "email": "other@example.com"}, status=409
    )
    assert "username 'ada' is taken" in assert_problem(response, 409)["detail"]


def test_create_with_a_taken_email_is_409_in_any_case(testapp):
    testapp.post_json("/users", ADA, status=201)
    response = testapp.post_json(
        "/users", {"username": "ada2", "email": "ada@example.COM"}, status=409
    )
    assert "email" in assert_problem(response, 409)["detail"]


def test_a_rejected_create_writes_nothing(testapp):
    testapp.post_json("/users", ADA, status=201)
    testapp.post_json("/users", {"username": "ada", "email": "new@example.com"}, status=409)
    assert [u["email"] for u in testapp.get("/users").json["items"]] == ["Ada@Example.com"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"email": "x@example.com"}, "/username"),
        ({"username": "abc"}, "/email"),
        ({"username": "ab", "email": "x@example.com"}, "/username"),
        ({"username": "a" * 33, "email": "x@example.com"}, "/username"),
        ({"username": "-abc", "email": "x@example.com"}, "/username"),
        ({"username": "ab c", "email": "x@example.com"}, "/username"),
        ({"username": "abc\n", "email": "x@example.com"}, "/username"),
        ({"username": "k\u212ala", "email": "x@example.com"}, "/username"),  # Kelvin sign
        ({"username": 123, "email": "x@example.com"}, "/username"),
        ({"username": None, "email": "x@example.com"}, "/username"),
        ({"username": "abc", "email": "not-an-email"}, "/email"),
        ({"username": "abc", "email": "a@" + "b" * 250 + ".com"}, "/email"),
        ({"username": "abc", "email": ["x@example.com"]}, "/email"),
        ({"username": "abc", "email": "x@example.com", "full_name": "x" * 201}, "/full_name"),
        ({"username": "abc", "email": "x@example.com", "full_name": "a\x00b"}, "/full_name"),
        ({"username": "abc", "email": "x@example.com", "full_name": 7}, "/full_name"),
        ({"username": "abc", "email": "x@example.com", "id": 5}, "/id"),
        ({"username": "abc", "email": "x@example.com", "version": 3}, "/version"),
    ],
)
def test_create_with_an_invalid_field_is_422_pointing_at_it(testapp, body, pointer):
    response = testapp.post_json("/users", body, status=422)
    problem = assert_problem(response, 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert all(error["detail"] for error in problem["errors"])
    assert testapp.get("/users").json["items"] == []


def test_create_reports_every_bad_field_at_once(testapp):
    response = testapp.post_json("/users", {"username": "!", "email": "nope"}, status=422)
    pointers = sorted(e["pointer"] for e in response.json["errors"])
    assert pointers == ["/email", "/username"]


def test_a_body_that_is_not_an_object_is_422(testapp):
    for body in ([], "ada", 3, None):
        response = testapp.post_json("/users", body, status=422)
        assert assert_problem(response, 422)["errors"][0]["pointer"] == ""


def test_usernames_accept_the_documented_alphabet(testapp):
    for name in ("abc", "a.b", "a_b", "a-b", "0ab", "A" * 32):
        testapp.post_json("/users", {"username": name, "email": f"{name}@example.com"}, status=201)


def test_a_deleted_users_username_and_email_can_be_taken_again(testapp):
    first = testapp.post_json("/users", ADA, status=201).json
    testapp.delete(f"/users/{first['id']}", status=204)
    again = testapp.post_json("/users", ADA, status=201).json
    assert again["id"] != first["id"]


# -- GET /users/{id} -----------------------------------------------------------------------


def test_get_unknown_user_is_404(testapp):
    assert_problem(testapp.get("/users/12345", status=404), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/users/0",
        "/users/-1",
        "/users/abc",
        "/users/1.5",
        "/users/9223372036854775808",
        "/users/" + "9" * 5000,
    ],
)
def test_get_with_an_id_that_cannot_exist_is_404(testapp, path):
    assert_problem(testapp.get(path, status=404), 404)


def test_get_carries_the_etag_and_if_none_match_gives_304(testapp):
    user = create(testapp).json
    response = testapp.get(f"/users/{user['id']}")
    assert response.headers["ETag"] == '"1"'
    not_modified = testapp.get(f"/users/{user['id']}", headers={"If-None-Match": '"1"'}, status=304)
    assert not_modified.body == b""
    assert not_modified.headers["ETag"] == '"1"'
    assert not_modified.headers["X-Request-ID"]
    testapp.get(f"/users/{user['id']}", headers={"If-None-Match": '"2"'}, status=200)


def test_head_of_a_user_answers_like_get_without_a_body(testapp):
    user = create(testapp).json
    response = testapp.head(f"/users/{user['id']}", status=200)
    assert response.body == b""
    assert response.headers["ETag"] == '"1"'


# -- PATCH /users/{id} ---------------------------------------------------------------------


def test_patch_changes_the_given_fields_and_bumps_the_version(testapp):
    user = create(testapp, full_name="Grace").json
    response = testapp.patch_json(f"/users/{user['id']}", {"full_name": "Grace Hopper"})
    patched = response.json
    assert patched["full_name"] == "Grace Hopper"
    assert patched["username"] == user["username"]
    assert patched["version"] == 2
    assert instant(patched["updated_at"]) >= instant(user["updated_at"])
    assert patched["created_at"] == user["created_at"]
    assert response.headers["ETag"] == '"2"'
    assert testapp.get(f"/users/{user['id']}").json == patched


def test_patch_accepts_merge_patch_json(testapp):
    user = create(testapp).json
    response = testapp.patch(
        f"/users/{user['id']}",
        b'{"username": "Hopper"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.json["username"] == "hopper"


def test_patch_with_null_full_name_resets_it(testapp):
    user = create(testapp, full_name="Grace").json
    patched = testapp.patch_json(f"/users/{user['id']}", {"full_name": None}).json
    assert patched["full_name"] == ""


def test_patch_with_null_username_or_email_is_422(testapp):
    user = create(testapp).json
    for field in ("username", "email"):
        response = testapp.patch_json(f"/users/{user['id']}", {field: None}, status=422)
        assert response.json["errors"][0]["pointer"] == f"/{field}"


def test_patch_with_nothing_to_change_keeps_the_version(testapp):
    user = create(testapp).json
    assert testapp.patch_json(f"/users/{user['id']}", {}).json["version"] == 1
    same = {"username": user["username"], "email": user["email"]}
    assert testapp.patch_json(f"/users/{user['id']}", same).json["version"] == 1


def test_patch_to_a_taken_username_is_409_and_changes_nothing(testapp):
    create(testapp, username="taken", email="taken@example.com")
    user = create(testapp).json
    response = testapp.patch_json(
        f"/users/{user['id']}", {"username": "TAKEN", "full_name": "x"}, status=409
    )
    assert_problem(response, 409)
    assert testapp.get(f"/users/{user['id']}").json == user


def test_patch_to_ones_own_email_in_another_case_is_allowed(testapp):
    user = create(testapp).json
    patched = testapp.patch_json(f"/users/{user['id']}", {"email": "GRACE@example.com"}).json
    assert patched["email"] == "GRACE@example.com"


def test_patch_with_an_invalid_field_is_422_and_changes_nothing(testapp):
    user = create(testapp).json
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "ok", "email": "bad"}, status=422
    )
    assert [e["pointer"] for e in response.json["errors"]] == ["/email"]
    assert testapp.get(f"/users/{user['id']}").json == user


def test_patch_of_an_unknown_user_is_404(testapp):
    assert_problem(testapp.patch_json("/users/999", {"full_name": "x"}, status=404), 404)


def test_patch_with_a_matching_if_match_succeeds(testapp):
    user = create(testapp).json
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "x"}, headers={"If-Match": '"1"'}, status=200
    )
    patched = response.json
    assert (patched["full_name"], patched["version"]) == ("x", 2)
    assert response.headers["ETag"] == '"2"'
    assert testapp.get(f"/users/{user['id']}").json == patched


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(testapp):
    user = create(testapp).json
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "first"})
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "second"}, headers={"If-Match": '"1"'}, status=412
    )
    assert_problem(response, 412)
    assert testapp.get(f"/users/{user['id']}").json["full_name"] == "first"


# -- DELETE /users/{id} --------------------------------------------------------------------


def test_delete_is_204_and_the_user_is_gone(testapp):
    user = create(testapp).json
    response = testapp.delete(f"/users/{user['id']}", status=204)
    assert response.body == b""
    testapp.get(f"/users/{user['id']}", status=404)
    testapp.delete(f"/users/{user['id']}", status=404)


def test_delete_with_a_stale_if_match_is_412_and_keeps_the_user(testapp):
    user = create(testapp).json
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "x"})
    testapp.delete(f"/users/{user['id']}", headers={"If-Match": '"1"'}, status=412)
    testapp.get(f"/users/{user['id']}", status=200)
    testapp.delete(f"/users/{user['id']}", headers={"If-Match": '"2"'}, status=204)


# -- GET /users ----------------------------------------------------------------------------


def make_users(testapp, count):
    return [
        testapp.post_json("/users", {"username": f"user{i:03}", "email": f"u{i}@example.com"}).json
        for i in range(count)
    ]


def test_list_is_a_page_ordered_by_id(testapp):
    users = make_users(testapp, 3)
    page = testapp.get("/users").json
    assert page == {"items": users, "next_cursor": None}


def test_list_follows_cursors_through_every_user_exactly_once(testapp):
    users = make_users(testapp, 7)
    seen, url = [], "/users?limit=3"
    while url:
        response = testapp.get(url)
        page = response.json
        assert len(page["items"]) <= 3
        seen += page["items"]
        if page["next_cursor"] is None:
            assert "Link" not in response.headers
            url = None
        else:
            link = response.headers["Link"]
            assert link.endswith('>; rel="next"') and "cursor=" in link
            url = link[link.index("<") + 1 : link.index(">")]
            assert page["next_cursor"] in url.replace("%3D", "=")
    assert seen == users


def test_list_defaults_to_50_per_page(testapp):
    make_users(testapp, 51)
    page = testapp.get("/users").json
    assert len(page["items"]) == 50 and page["next_cursor"]


def test_list_filters_by_username_and_email_ignoring_case(testapp):
    ada = testapp.post_json("/users", ADA).json
    make_users(testapp, 2)
    assert testapp.get("/users?username=ADA").json["items"] == [ada]
    assert testapp.get("/users?email=ada@example.com").json["items"] == [ada]
    assert testapp.get("/users?email=nobody@example.com").json["items"] == []


def next_link(response):
    """The URL of the ``Link: <...>; rel="next"`` header."""
    link = response.headers["Link"]
    assert link.endswith('>; rel="next"'), link
    return link[link.index("<") + 1 : link.index(">")]


def test_the_next_link_keeps_the_query_and_replaces_only_the_cursor(testapp):
    """The next link is the request's own URL with the next cursor instead of its own. (The
    filters, username and email, are unique: a filtered list has one page, so ``limit`` is the
    parameter that shows the query kept.)"""
    users = make_users(testapp, 5)

    second = testapp.get(next_link(testapp.get("/users?limit=2")))
    assert second.json["items"] == users[2:4]  # still two to a page
    link = next_link(second)
    assert parse_qs(urlsplit(link).query) == {
        "limit": ["2"],
        "cursor": [second.json["next_cursor"]],  # the new cursor, the old one gone
    }
    assert testapp.get(link).json == {"items": users[4:], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=1&limit=2", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=%C3%A9", "cursor"),
        ("username=%00", "username"),
        ("email=a%00b", "email"),
    ],
)
def test_list_with_a_bad_parameter_is_400_naming_it(testapp, query, parameter):
    response = testapp.get(f"/users?{query}", status=400)
    problem = assert_problem(response, 400)
    assert [e["parameter"] for e in problem["errors"]] == [parameter]


def test_an_edited_cursor_is_400(testapp):
    make_users(testapp, 3)
    cursor = testapp.get("/users?limit=1").json["next_cursor"]
    for forged in (cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), cursor[1:], cursor + "x"):
        testapp.get("/users", {"cursor": forged}, status=400)


def test_a_cursor_signed_with_another_secret_is_400(testapp, app_settings):
    users = make_users(testapp, 3)
    after_first = {"after": users[0]["id"]}
    ours = cursor_serializer(app_settings["myservice.secret"]).dumps(after_first).decode()
    forged = cursor_serializer("not-our-secret").dumps(after_first).decode()

    # The same payload, signed with the service's secret, is a cursor it accepts ...
    assert testapp.get("/users", {"cursor": ours}).json["items"] == users[1:]
    # ... so only the secret makes this one a forgery.
    response = testapp.get("/users", {"cursor": forged}, status=400)
    assert [error["parameter"] for error in assert_problem(response, 400)["errors"]] == ["cursor"]


def test_a_new_user_was_updated_when_it_was_created(testapp):
    user = create(testapp).json
    assert user["updated_at"] == user["created_at"]


@pytest.fixture
def executed_sql(app):
    """The (statement, parameters) the app sends to the database while the test runs, but for
    the authentication's (its look-up of the token)."""
    executed = []
    engine = app.registry["dbsession_factory"].kw["bind"]

    def record(conn, cursor, statement, parameters, context, executemany):
        if "api_tokens" not in statement:
            executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    yield executed
    event.remove(engine, "before_cursor_execute", record)


def test_a_page_is_one_keyset_range_scan_never_an_offset(testapp, executed_sql):
    make_users(testapp, 3)
    cursor = testapp.get("/users?limit=1").json["next_cursor"]
    executed_sql.clear()
    testapp.get("/users", {"limit": 1, "cursor": cursor})
    [(query, parameters)] = [e for e in executed_sql if e[0].lstrip().upper().startswith("SELECT")]
    assert "users.id >" in query and "ORDER BY users.id" in query
    if "OFFSET" in query.upper():  # SQLite always renders one: it must skip nothing
        assert list(parameters)[-1] == 0


def test_a_patch_that_keeps_username_and_email_does_not_look_for_their_holders(
    testapp, executed_sql
):
    user = create(testapp).json
    executed_sql.clear()
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "Grace Hopper"})
    assert not [statement for statement, _ in executed_sql if "lower(users.email)" in statement]
    executed_sql.clear()
    testapp.patch_json(f"/users/{user['id']}", {"email": "hopper@example.com"})
    assert [statement for statement, _ in executed_sql if "lower(users.email)" in statement]


def test_a_create_is_one_insert_and_looks_for_holders_only_when_it_conflicts(testapp, executed_sql):
    create(testapp, username="ada", email="ada@example.com")
    executed_sql.clear()
    create(testapp, username="grace", email="grace@example.com")
    [insert] = [statement for statement, _ in executed_sql if "users" in statement]
    assert insert.lstrip().upper().startswith("INSERT")
    executed_sql.clear()
    testapp.post_json("/users", {"username": "ADA", "email": "Grace@Example.com"}, status=409)
    assert [statement for statement, _ in executed_sql if "lower(users.email)" in statement]


def test_a_create_whose_username_and_email_are_both_taken_names_both(testapp):
    create(testapp, username="ada", email="ada@example.com")
    create(testapp, username="grace", email="grace@example.com")
    response = testapp.post_json(
        "/users", {"username": "Ada", "email": "GRACE@example.com"}, status=409
    )
    detail = assert_problem(response, 409)["detail"]
    assert detail == "username 'ada' and email 'GRACE@example.com' are taken"
