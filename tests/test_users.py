"""The /users contract for one user: create, read, update and delete it (the list: test_users_list,
many at once: test_users_bulk)."""

import pytest

from tests.support.contract import USER_FIELDS, instant
from tests.support.factories import ADA, new_user
from tests.support.problems import assert_problem

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
    assert new_user(testapp)["full_name"] == ""


def test_create_with_a_null_full_name_takes_the_default(testapp):
    assert new_user(testapp, full_name=None)["full_name"] == ""


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
    user = new_user(testapp)
    response = testapp.get(f"/users/{user['id']}")
    assert response.headers["ETag"] == '"1"'
    not_modified = testapp.get(f"/users/{user['id']}", headers={"If-None-Match": '"1"'}, status=304)
    assert not_modified.body == b""
    assert not_modified.headers["ETag"] == '"1"'
    assert not_modified.headers["X-Request-ID"]
    testapp.get(f"/users/{user['id']}", headers={"If-None-Match": '"2"'}, status=200)


def test_head_of_a_user_answers_like_get_without_a_body(testapp):
    user = new_user(testapp)
    response = testapp.head(f"/users/{user['id']}", status=200)
    assert response.body == b""
    assert response.headers["ETag"] == '"1"'


# -- PATCH /users/{id} ---------------------------------------------------------------------


def test_patch_changes_the_given_fields_and_bumps_the_version(testapp):
    user = new_user(testapp, full_name="Grace")
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
    user = new_user(testapp)
    response = testapp.patch(
        f"/users/{user['id']}",
        b'{"username": "Hopper"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.json["username"] == "hopper"


def test_patch_with_null_full_name_resets_it(testapp):
    user = new_user(testapp, full_name="Grace")
    patched = testapp.patch_json(f"/users/{user['id']}", {"full_name": None}).json
    assert patched["full_name"] == ""


def test_patch_with_null_username_or_email_is_422(testapp):
    user = new_user(testapp)
    for field in ("username", "email"):
        response = testapp.patch_json(f"/users/{user['id']}", {field: None}, status=422)
        assert response.json["errors"][0]["pointer"] == f"/{field}"


def test_patch_with_nothing_to_change_keeps_the_version(testapp):
    user = new_user(testapp)
    assert testapp.patch_json(f"/users/{user['id']}", {}).json["version"] == 1
    same = {"username": user["username"], "email": user["email"]}
    assert testapp.patch_json(f"/users/{user['id']}", same).json["version"] == 1


def test_patch_to_a_taken_username_is_409_and_changes_nothing(testapp):
    new_user(testapp, username="taken", email="taken@example.com")
    user = new_user(testapp)
    response = testapp.patch_json(
        f"/users/{user['id']}", {"username": "TAKEN", "full_name": "x"}, status=409
    )
    assert_problem(response, 409)
    assert testapp.get(f"/users/{user['id']}").json == user


def test_patch_to_ones_own_email_in_another_case_is_allowed(testapp):
    user = new_user(testapp, "grace")
    patched = testapp.patch_json(f"/users/{user['id']}", {"email": "GRACE@example.org"}).json
    assert patched["email"] == "GRACE@example.org"


def test_patch_with_an_invalid_field_is_422_and_changes_nothing(testapp):
    user = new_user(testapp)
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "ok", "email": "bad"}, status=422
    )
    assert [e["pointer"] for e in response.json["errors"]] == ["/email"]
    assert testapp.get(f"/users/{user['id']}").json == user


def test_patch_of_an_unknown_user_is_404(testapp):
    assert_problem(testapp.patch_json("/users/999", {"full_name": "x"}, status=404), 404)


def test_patch_with_a_matching_if_match_succeeds(testapp):
    user = new_user(testapp)
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "x"}, headers={"If-Match": '"1"'}, status=200
    )
    patched = response.json
    assert (patched["full_name"], patched["version"]) == ("x", 2)
    assert response.headers["ETag"] == '"2"'
    assert testapp.get(f"/users/{user['id']}").json == patched


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(testapp):
    user = new_user(testapp)
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "first"})
    response = testapp.patch_json(
        f"/users/{user['id']}", {"full_name": "second"}, headers={"If-Match": '"1"'}, status=412
    )
    assert_problem(response, 412)
    assert testapp.get(f"/users/{user['id']}").json["full_name"] == "first"


# -- DELETE /users/{id} --------------------------------------------------------------------


def test_delete_is_204_and_the_user_is_gone(testapp):
    user = new_user(testapp)
    response = testapp.delete(f"/users/{user['id']}", status=204)
    assert response.body == b""
    testapp.get(f"/users/{user['id']}", status=404)
    testapp.delete(f"/users/{user['id']}", status=404)


def test_delete_with_a_stale_if_match_is_412_and_keeps_the_user(testapp):
    user = new_user(testapp)
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "x"})
    testapp.delete(f"/users/{user['id']}", headers={"If-Match": '"1"'}, status=412)
    testapp.get(f"/users/{user['id']}", status=200)
    testapp.delete(f"/users/{user['id']}", headers={"If-Match": '"2"'}, status=204)


def test_a_new_user_was_updated_when_it_was_created(testapp):
    user = new_user(testapp)
    assert user["updated_at"] == user["created_at"]


def test_a_patch_that_keeps_username_and_email_does_not_look_for_their_holders(
    testapp, executed_sql
):
    user = new_user(testapp)
    executed_sql.clear()
    testapp.patch_json(f"/users/{user['id']}", {"full_name": "Grace Hopper"})
    assert not [statement for statement, _ in executed_sql if "lower(users.email)" in statement]
    executed_sql.clear()
    testapp.patch_json(f"/users/{user['id']}", {"email": "hopper@example.com"})
    assert [statement for statement, _ in executed_sql if "lower(users.email)" in statement]


def test_a_create_is_one_insert_and_looks_for_holders_only_when_it_conflicts(testapp, executed_sql):
    new_user(testapp, username="ada", email="ada@example.com")
    executed_sql.clear()
    new_user(testapp, username="grace", email="grace@example.com")
    [insert] = [statement for statement, _ in executed_sql if "users" in statement]
    assert insert.lstrip().upper().startswith("INSERT")
    executed_sql.clear()
    testapp.post_json("/users", {"username": "ADA", "email": "Grace@Example.com"}, status=409)
    assert [statement for statement, _ in executed_sql if "lower(users.email)" in statement]


def test_a_create_whose_username_and_email_are_both_taken_names_both(testapp):
    new_user(testapp, username="ada", email="ada@example.com")
    new_user(testapp, username="grace", email="grace@example.com")
    response = testapp.post_json(
        "/users", {"username": "Ada", "email": "GRACE@example.com"}, status=409
    )
    detail = assert_problem(response, 409)["detail"]
    assert detail == "username 'ada' and email 'GRACE@example.com' are taken"
