"""Memberships: join, leave, both listings, and the counts that deleting users and groups keep.

Every test checks ``member_count`` against the memberships themselves, read from the tables.
"""

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from myservice.data.models import Group, Membership
from tests.support.contract import USER_FIELDS, instant
from tests.support.factories import new_group, new_user
from tests.support.problems import assert_problem


def member_path(group, user):
    return f"/groups/{group['id']}/members/{user['id']}"


@pytest.fixture
def tables(app):
    """Read the tables through the test's connection (what the requests committed)."""
    factory = app.registry["dbsession_factory"]

    def counts():
        with Session(factory.kw["bind"]) as session:
            groups = {g.id: g.member_count for g in session.scalars(select(Group))}
            members = {}
            for membership in session.scalars(select(Membership)):
                members.setdefault(membership.group_id, []).append(membership.user_id)
            return groups, members

    return counts


def assert_counts_match_memberships(tables):
    groups, members = tables()
    assert groups == {group_id: len(members.get(group_id, [])) for group_id in groups}


# -- PUT /groups/{id}/members/{user_id} ----------------------------------------------------


def test_join_is_201_with_the_membership_and_counts_it(testapp, tables):
    group, user = new_group(testapp), new_user(testapp, "ada")
    response = testapp.put(member_path(group, user), status=201)
    assert set(response.json) == {"group_id", "user_id", "joined_at"}
    assert (response.json["group_id"], response.json["user_id"]) == (group["id"], user["id"])
    assert response.json["joined_at"].endswith("Z")
    after = testapp.get(f"/groups/{group['id']}")
    assert after.json["member_count"] == 1
    assert_counts_match_memberships(tables)


def test_join_bumps_the_groups_version_and_etag(testapp):
    group, user = new_group(testapp), new_user(testapp, "ada")
    testapp.put(member_path(group, user), status=201)
    after = testapp.get(f"/groups/{group['id']}")
    assert after.json["version"] == 2
    assert after.headers["ETag"] == '"2"'
    assert instant(after.json["updated_at"]) >= instant(group["updated_at"])
    testapp.get(f"/groups/{group['id']}", headers={"If-None-Match": '"1"'}, status=200)
    testapp.patch_json(
        f"/groups/{group['id']}", {"name": "x"}, headers={"If-Match": '"1"'}, status=412
    )


def test_joining_again_is_200_with_the_same_membership_and_changes_nothing(testapp, tables):
    group, user = new_group(testapp), new_user(testapp, "ada")
    first = testapp.put(member_path(group, user), status=201).json
    before = testapp.get(f"/groups/{group['id']}").json
    assert testapp.put(member_path(group, user), status=200).json == first
    assert testapp.get(f"/groups/{group['id']}").json == before
    assert_counts_match_memberships(tables)


def test_a_member_joining_again_a_full_group_is_200(testapp):
    group, user = new_group(testapp, max_members=1), new_user(testapp, "ada")
    testapp.put(member_path(group, user), status=201)
    testapp.put(member_path(group, user), status=200)


def test_joining_a_full_group_is_409_and_changes_nothing(testapp, tables):
    group = new_group(testapp, max_members=1)
    testapp.put(member_path(group, new_user(testapp, "ada")), status=201)
    before = testapp.get(f"/groups/{group['id']}").json
    response = testapp.put(member_path(group, new_user(testapp, "bob")), status=409)
    assert "full" in assert_problem(response, 409)["detail"]
    assert testapp.get(f"/groups/{group['id']}").json == before
    assert_counts_match_memberships(tables)


def test_a_group_with_max_members_zero_takes_nobody(testapp):
    group = new_group(testapp, max_members=0)
    assert_problem(testapp.put(member_path(group, new_user(testapp, "ada")), status=409), 409)


@pytest.mark.parametrize("missing", ["group", "user"])
def test_joining_with_an_unknown_group_or_user_is_404(testapp, missing):
    found = {"group": new_group(testapp), "user": new_user(testapp, "ada")}
    found[missing] = {"id": 999999}
    response = testapp.put(member_path(found["group"], found["user"]), status=404)
    assert missing in assert_problem(response, 404)["detail"]


# -- DELETE /groups/{id}/members/{user_id} -------------------------------------------------


def test_leave_is_204_and_uncounts_the_member(testapp, tables):
    group, user = new_group(testapp), new_user(testapp, "ada")
    testapp.put(member_path(group, user), status=201)
    assert testapp.delete(member_path(group, user), status=204).body == b""
    after = testapp.get(f"/groups/{group['id']}").json
    assert (after["member_count"], after["version"]) == (0, 3)
    assert_counts_match_memberships(tables)


def test_leaving_a_group_one_is_not_in_is_404(testapp):
    group, user = new_group(testapp), new_user(testapp, "ada")
    response = testapp.delete(member_path(group, user), status=404)
    assert "not a member" in assert_problem(response, 404)["detail"]
    assert testapp.get(f"/groups/{group['id']}").json == group


@pytest.mark.parametrize("path", ["/groups/999/members/1", "/groups/1/members/999"])
def test_leaving_with_an_unknown_group_or_user_is_404(testapp, path):
    new_group(testapp)
    new_user(testapp, "ada")
    assert_problem(testapp.delete(path, status=404), 404)


def test_a_full_group_takes_a_new_member_after_one_leaves(testapp):
    group = new_group(testapp, max_members=1)
    ada, bob = new_user(testapp, "ada"), new_user(testapp, "bob")
    testapp.put(member_path(group, ada), status=201)
    testapp.delete(member_path(group, ada), status=204)
    testapp.put(member_path(group, bob), status=201)


# -- deleting users and groups -------------------------------------------------------------


def test_deleting_a_user_removes_its_memberships_and_uncounts_it_everywhere(testapp, tables):
    ops, dev = new_group(testapp, "ops"), new_group(testapp, "dev")
    ada, bob = new_user(testapp, "ada"), new_user(testapp, "bob")
    for group in (ops, dev):
        testapp.put(member_path(group, ada), status=201)
    testapp.put(member_path(ops, bob), status=201)

    testapp.delete(f"/users/{ada['id']}", status=204)

    assert testapp.get(f"/groups/{ops['id']}").json["member_count"] == 1
    assert testapp.get(f"/groups/{dev['id']}").json["member_count"] == 0
    assert testapp.get(f"/groups/{ops['id']}/members").json["items"] == [bob]
    assert_counts_match_memberships(tables)


def test_deleting_a_group_removes_its_memberships(testapp, tables):
    ops, dev = new_group(testapp, "ops"), new_group(testapp, "dev")
    ada = new_user(testapp, "ada")
    testapp.put(member_path(ops, ada), status=201)
    testapp.put(member_path(dev, ada), status=201)

    testapp.delete(f"/groups/{ops['id']}", status=204)

    assert [g["id"] for g in testapp.get(f"/users/{ada['id']}/groups").json["items"]] == [dev["id"]]
    assert tables()[1] == {dev["id"]: [ada["id"]]}
    testapp.delete(f"/users/{ada['id']}", status=204)  # nothing left that would restrict it
    assert_counts_match_memberships(tables)


# -- GET /groups/{id}/members and GET /users/{id}/groups -----------------------------------


def test_members_are_a_page_of_users_by_id_with_cursors(testapp):
    group = new_group(testapp)
    users = [new_user(testapp, f"user{n}") for n in range(5)]
    for user in reversed(users):
        testapp.put(member_path(group, user), status=201)
    first = testapp.get(f"/groups/{group['id']}/members?limit=3")
    assert set(first.json["items"][0]) == USER_FIELDS
    assert first.json["items"] == users[:3]
    assert 'rel="next"' in first.headers["Link"]
    rest = testapp.get(f"/groups/{group['id']}/members", {"cursor": first.json["next_cursor"]})
    assert rest.json == {"items": users[3:], "next_cursor": None}


def test_a_users_groups_are_a_page_of_groups_by_id_with_cursors(testapp):
    user = new_user(testapp, "ada")
    groups = [new_group(testapp, f"g{n}") for n in range(3)]
    new_group(testapp, "not joined")
    for group in groups:
        testapp.put(member_path(group, user), status=201)
    first = testapp.get(f"/users/{user['id']}/groups?limit=2").json
    assert [g["id"] for g in first["items"]] == [g["id"] for g in groups[:2]]
    assert first["items"][0]["member_count"] == 1
    rest = testapp.get(f"/users/{user['id']}/groups", {"cursor": first["next_cursor"]}).json
    assert ([g["id"] for g in rest["items"]], rest["next_cursor"]) == ([groups[2]["id"]], None)


@pytest.mark.parametrize("path", ["/groups/999/members", "/users/999/groups"])
def test_listing_members_of_an_unknown_group_or_groups_of_an_unknown_user_is_404(testapp, path):
    assert_problem(testapp.get(path, status=404), 404)


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "cursor=forged"])
def test_membership_listings_with_a_bad_parameter_are_400(testapp, query):
    group, user = new_group(testapp), new_user(testapp, "ada")
    for path in (f"/groups/{group['id']}/members", f"/users/{user['id']}/groups"):
        problem = assert_problem(testapp.get(f"{path}?{query}", status=400), 400)
        assert [e["parameter"] for e in problem["errors"]] == [query.split("=")[0]]
