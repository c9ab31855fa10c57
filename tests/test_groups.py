"""The /groups contract: create, list, read, update and delete groups."""

import pytest

from tests.support.contract import GROUP_FIELDS
from tests.support.factories import new_group
from tests.support.problems import assert_problem

# -- POST /groups --------------------------------------------------------------------------


def test_create_returns_201_the_group_its_location_and_etag(testapp):
    response = testapp.post_json(
        "/groups", {"name": "Ops Team", "description": "on call", "max_members": 3}, status=201
    )
    group = response.json
    assert set(group) == GROUP_FIELDS
    assert group["name"] == "Ops Team"  # returned as given
    assert group["description"] == "on call"
    assert group["max_members"] == 3
    assert group["member_count"] == 0
    assert group["version"] == 1
    assert group["updated_at"] == group["created_at"] and group["created_at"].endswith("Z")
    assert response.location.endswith(f"/groups/{group['id']}")
    assert response.headers["ETag"] == '"1"'
    assert testapp.get(response.location).json == group


def test_create_defaults_to_no_description_and_no_limit(testapp):
    group = new_group(testapp)
    assert group["description"] == ""
    assert group["max_members"] is None


def test_create_with_null_description_and_max_members_takes_the_defaults(testapp):
    group = new_group(testapp, description=None, max_members=None)
    assert (group["description"], group["max_members"]) == ("", None)


def test_create_accepts_a_limit_of_zero(testapp):
    assert new_group(testapp, max_members=0)["max_members"] == 0


def test_create_with_a_name_taken_in_any_case_is_409_and_writes_nothing(testapp):
    new_group(testapp, name="Ops")
    response = testapp.post_json("/groups", {"name": "oPS"}, status=409)
    assert "name 'oPS' is taken" in assert_problem(response, 409)["detail"]
    assert [g["name"] for g in testapp.get("/groups").json["items"]] == ["Ops"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/name"),
        ({"name": ""}, "/name"),
        ({"name": "x" * 65}, "/name"),
        ({"name": None}, "/name"),
        ({"name": 5}, "/name"),
        ({"name": "a\x00b"}, "/name"),
        ({"name": "ok", "description": "x" * 501}, "/description"),
        ({"name": "ok", "description": 1}, "/description"),
        ({"name": "ok", "max_members": -1}, "/max_members"),
        ({"name": "ok", "max_members": 1.5}, "/max_members"),
        ({"name": "ok", "max_members": "3"}, "/max_members"),
        ({"name": "ok", "max_members": True}, "/max_members"),
        ({"name": "ok", "max_members": 2**31}, "/max_members"),
        ({"name": "ok", "member_count": 3}, "/member_count"),
        ({"name": "ok", "id": 3}, "/id"),
    ],
)
def test_create_with_an_invalid_field_is_422_pointing_at_it(testapp, body, pointer):
    problem = assert_problem(testapp.post_json("/groups", body, status=422), 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert all(error["detail"] for error in problem["errors"])
    assert testapp.get("/groups").json["items"] == []


def test_create_accepts_names_of_1_and_64_characters(testapp):
    for name in ("x", "y" * 64, "Ünïcode ✓"):
        assert new_group(testapp, name=name)["name"] == name


def test_create_refuses_other_media_types_and_broken_json(testapp):
    assert_problem(testapp.post("/groups", b"name=x", content_type="text/plain", status=415), 415)
    assert_problem(
        testapp.post("/groups", b'{"name": NaN}', content_type="application/json", status=400),
        400,
    )


# -- GET /groups/{id} ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/groups/12345", "/groups/0", "/groups/9223372036854775808"])
def test_get_unknown_group_is_404(testapp, path):
    assert_problem(testapp.get(path, status=404), 404)


def test_get_carries_the_etag_and_if_none_match_gives_304(testapp):
    group = new_group(testapp)
    assert testapp.get(f"/groups/{group['id']}").headers["ETag"] == '"1"'
    not_modified = testapp.get(
        f"/groups/{group['id']}", headers={"If-None-Match": '"1"'}, status=304
    )
    assert not_modified.body == b""
    assert not_modified.headers["ETag"] == '"1"'
    testapp.get(f"/groups/{group['id']}", headers={"If-None-Match": '"2"'}, status=200)


# -- PATCH /groups/{id} --------------------------------------------------------------------


def test_patch_changes_the_given_fields_and_bumps_the_version(testapp):
    group = new_group(testapp, description="old")
    response = testapp.patch_json(
        f"/groups/{group['id']}", {"name": "Ops 2", "max_members": 5}, headers={"If-Match": '"1"'}
    )
    patched = response.json
    assert (patched["name"], patched["description"], patched["max_members"]) == ("Ops 2", "old", 5)
    assert patched["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert testapp.get(f"/groups/{group['id']}").json == patched


def test_patch_with_null_max_members_lifts_the_limit_and_null_description_clears_it(testapp):
    group = new_group(testapp, description="d", max_members=2)
    patched = testapp.patch(
        f"/groups/{group['id']}",
        b'{"max_members": null, "description": null}',
        headers={"Content-Type": "application/merge-patch+json"},
    ).json
    assert (patched["max_members"], patched["description"]) == (None, "")


def test_patch_with_null_name_is_422(testapp):
    group = new_group(testapp)
    response = testapp.patch_json(f"/groups/{group['id']}", {"name": None}, status=422)
    assert [e["pointer"] for e in response.json["errors"]] == ["/name"]


def test_patch_to_a_taken_name_is_409_and_changes_nothing(testapp):
    new_group(testapp, name="Taken")
    group = new_group(testapp)
    response = testapp.patch_json(
        f"/groups/{group['id']}", {"name": "TAKEN", "description": "x"}, status=409
    )
    assert_problem(response, 409)
    assert testapp.get(f"/groups/{group['id']}").json == group


def test_patch_to_its_own_name_in_another_case_is_allowed(testapp):
    group = new_group(testapp, name="Ops")
    assert testapp.patch_json(f"/groups/{group['id']}", {"name": "OPS"}).json["name"] == "OPS"


def test_patch_of_max_members_below_member_count_is_409_and_changes_nothing(testapp):
    group = new_group(testapp)
    for n in range(3):
        user = testapp.post_json("/users", {"username": f"u{n}xx", "email": f"{n}@x.org"}).json
        testapp.put(f"/groups/{group['id']}/members/{user['id']}", status=201)
    before = testapp.get(f"/groups/{group['id']}").json
    response = testapp.patch_json(f"/groups/{group['id']}", {"max_members": 2}, status=409)
    assert "3 members" in assert_problem(response, 409)["detail"]
    assert testapp.get(f"/groups/{group['id']}").json == before
    assert testapp.patch_json(f"/groups/{group['id']}", {"max_members": 3}).json["max_members"] == 3


def test_patch_and_delete_with_a_stale_if_match_are_412_and_change_nothing(testapp):
    path = f"/groups/{new_group(testapp)['id']}"
    current = testapp.patch_json(path, {"description": "first"}).json
    stale = {"If-Match": '"1"'}
    assert_problem(testapp.patch_json(path, {"name": "x"}, headers=stale, status=412), 412)
    assert_problem(testapp.delete(path, headers=stale, status=412), 412)
    assert testapp.get(path).json == current
    testapp.delete(path, headers={"If-Match": '"2"'}, status=204)


def test_patch_of_an_unknown_group_is_404(testapp):
    assert_problem(testapp.patch_json("/groups/999", {"name": "x"}, status=404), 404)


def test_patch_with_an_invalid_field_is_422_and_changes_nothing(testapp):
    group = new_group(testapp)
    response = testapp.patch_json(
        f"/groups/{group['id']}", {"description": "ok", "max_members": -2}, status=422
    )
    assert [e["pointer"] for e in response.json["errors"]] == ["/max_members"]
    assert testapp.get(f"/groups/{group['id']}").json == group


# -- DELETE /groups/{id} -------------------------------------------------------------------


def test_delete_is_204_and_the_group_is_gone(testapp):
    group = new_group(testapp)
    assert testapp.delete(f"/groups/{group['id']}", status=204).body == b""
    testapp.get(f"/groups/{group['id']}", status=404)
    assert_problem(testapp.delete(f"/groups/{group['id']}", status=404), 404)


def test_a_deleted_groups_name_can_be_taken_again(testapp):
    first = new_group(testapp, "Ops")
    testapp.delete(f"/groups/{first['id']}", status=204)
    assert new_group(testapp, "Ops")["id"] != first["id"]


# -- GET /groups ---------------------------------------------------------------------------


def make_groups(testapp, count):
    return [testapp.post_json("/groups", {"name": f"group {i:03}"}).json for i in range(count)]


def test_list_is_a_page_ordered_by_id(testapp):
    groups = make_groups(testapp, 3)
    assert testapp.get("/groups").json == {"items": groups, "next_cursor": None}


def test_list_pages_by_cursor_and_link_through_every_group_exactly_once(testapp):
    groups = make_groups(testapp, 3)
    first = testapp.get("/groups?limit=2")
    assert first.json["items"] == groups[:2]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    second = testapp.get(link[link.index("<") + 1 : link.index(">")])
    assert second.json == {"items": groups[2:], "next_cursor": None}
    assert "Link" not in second.headers
    by_cursor = testapp.get("/groups", {"limit": 2, "cursor": first.json["next_cursor"]})
    assert by_cursor.json == second.json


def test_list_filters_by_name_exactly_ignoring_case(testapp):
    groups = make_groups(testapp, 3)
    assert testapp.get("/groups", {"name": "GROUP 001"}).json["items"] == [groups[1]]
    assert testapp.get("/groups", {"name": "group 00"}).json["items"] == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("limit=5.0", "limit"),
        ("limit=%205", "limit"),
        ("cursor=forged", "cursor"),
        ("name=a%00", "name"),
        ("name=a&name=b", "name"),
    ],
)
def test_list_with_a_bad_parameter_is_400_naming_it(testapp, query, parameter):
    problem = assert_problem(testapp.get(f"/groups?{query}", status=400), 400)
    assert [e["parameter"] for e in problem["errors"]] == [parameter]
