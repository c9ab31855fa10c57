"""The change feed, GET /changes: what each write appends (docs/design.md lists it), and that
nothing is appended by a request that did not commit. How the feed is read: test_changes_reading.

In-process tests use ``testapp`` (each request commits on a SAVEPOINT of one rolled-back
connection); those that need requests which really fail, retry or commit build the app with a
few extra views, or run the real server.
"""

from collections import Counter

import pytest
from pyramid.httpexceptions import HTTPBadRequest
from sqlalchemy.orm.exc import StaleDataError

from myservice.api.changes import record_change
from myservice.data.models import User, insert_new
from tests.support.app import app_with_views, with_token
from tests.support.factories import ADA, new_group, new_user
from tests.support.feed import feed, feed_head
from tests.support.problems import assert_problem


def assert_no_change_after(testapp, after):
    assert testapp.get("/changes", {"after": after}).json == {"items": [], "next_after": after}


# -- groups, memberships, bulk: the changes docs/design.md lists for each write --------------
def join_all(testapp, pairs, after):
    """Each (group, user) joins; the seq of the feed's last change after that."""
    for group, user in pairs:
        testapp.put(f"/groups/{group['id']}/members/{user['id']}", status=201)
    return feed(testapp, after)[-1]["seq"]


def kinds(changes):
    return [(change["type"], change["resource"]) for change in changes]


def test_creating_patching_and_deleting_a_group_append_its_three_changes(testapp, feed_start):
    group = new_group(testapp, description="first")
    path = f"/groups/{group['id']}"
    patched = testapp.patch_json(path, {"description": "second"}).json
    testapp.patch_json(path, {"description": "second"})  # changes nothing: appends nothing
    testapp.delete(path, status=204)

    created, updated, deleted = feed(testapp, feed_start)
    assert (created["type"], created["resource"], created["data"]) == ("group.created", path, group)
    assert (updated["type"], updated["data"]) == ("group.updated", patched)
    assert (deleted["type"], deleted["resource"], deleted["data"]) == ("group.deleted", path, None)


def test_joining_appends_membership_added_and_the_group_with_its_new_count(testapp, feed_start):
    group, user = new_group(testapp), new_user(testapp)
    member = f"/groups/{group['id']}/members/{user['id']}"
    joined = testapp.put(member, status=201).json
    testapp.put(member, status=200)  # already a member: nothing changes, nothing appended

    changes = feed(testapp, feed_start)[2:]
    assert kinds(changes) == [
        ("membership.added", member),
        ("group.updated", f"/groups/{group['id']}"),
    ]
    assert changes[0]["data"] == joined
    assert changes[1]["data"] == testapp.get(f"/groups/{group['id']}").json
    assert changes[1]["data"]["member_count"] == 1


def test_leaving_appends_membership_removed_and_the_group_with_its_new_count(testapp, feed_start):
    group, user = new_group(testapp), new_user(testapp)
    member = f"/groups/{group['id']}/members/{user['id']}"
    testapp.put(member, status=201)
    testapp.delete(member, status=204)

    removed, updated = feed(testapp, feed_start)[4:]
    assert (removed["type"], removed["resource"], removed["data"]) == (
        "membership.removed",
        member,
        None,
    )
    assert updated["type"] == "group.updated"
    assert updated["data"]["member_count"] == 0


def test_deleting_a_user_appends_its_memberships_removed_its_groups_and_user_deleted(
    testapp, feed_start
):
    ops, dev = new_group(testapp, "Ops"), new_group(testapp, "Dev")
    user = new_user(testapp)
    after = join_all(testapp, [(ops, user), (dev, user)], feed_start)
    testapp.delete(f"/users/{user['id']}", status=204)

    assert kinds(feed(testapp, after)) == [
        ("membership.removed", f"/groups/{ops['id']}/members/{user['id']}"),
        ("group.updated", f"/groups/{ops['id']}"),
        ("membership.removed", f"/groups/{dev['id']}/members/{user['id']}"),
        ("group.updated", f"/groups/{dev['id']}"),
        ("user.deleted", f"/users/{user['id']}"),
    ]


def test_deleting_a_group_appends_a_membership_removed_per_member_then_group_deleted(
    testapp, feed_start
):
    group = new_group(testapp)
    ada = new_user(testapp, username="ada", email="ada@example.com")
    grace = new_user(testapp)
    after = join_all(testapp, [(group, ada), (group, grace)], feed_start)
    testapp.delete(f"/groups/{group['id']}", status=204)

    assert kinds(feed(testapp, after)) == [
        ("membership.removed", f"/groups/{group['id']}/members/{ada['id']}"),
        ("membership.removed", f"/groups/{group['id']}/members/{grace['id']}"),
        ("group.deleted", f"/groups/{group['id']}"),
    ]


def test_a_bulk_create_appends_one_user_created_per_user_in_request_order(testapp, feed_start):
    body = {"users": [{"username": f"bulk{n}", "email": f"bulk{n}@example.com"} for n in range(3)]}
    created = testapp.post_json("/users/bulk", body, status=201).json["items"]

    changes = feed(testapp, feed_start)
    assert [change["type"] for change in changes] == ["user.created"] * 3
    assert [change["data"] for change in changes] == created


def test_a_rejected_bulk_or_group_write_appends_nothing(testapp, feed_start):
    full = new_group(testapp, "Ops", max_members=0)
    user = new_user(testapp)
    after = feed(testapp, feed_start)[-1]["seq"]
    testapp.post_json("/groups", {"name": "OPS"}, status=409)
    testapp.put(f"/groups/{full['id']}/members/{user['id']}", status=409)  # the group is full
    testapp.put(f"/groups/{full['id'] + 1000}/members/{user['id']}", status=404)
    body = {
        "users": [
            {"username": "fresh", "email": "fresh@example.com"},
            {"username": user["username"], "email": "x@example.com"},  # taken
        ]
    }
    testapp.post_json("/users/bulk", body, status=409)

    assert feed(testapp, after) == []


# -- every user change ---------------------------------------------------------------------


def test_creating_a_user_appends_user_created_with_the_user_as_get_shows_it(testapp, feed_start):
    response = testapp.post_json("/users", ADA, status=201)

    [change] = feed(testapp, feed_start)
    assert change["type"] == "user.created"
    assert change["resource"] == f"/users/{response.json['id']}"
    assert change["data"] == response.json == testapp.get(change["resource"]).json
    assert change["seq"] == feed_start + 1
    assert change["at"].endswith("Z")


def test_patching_a_user_appends_user_updated_with_the_user_after_the_patch(testapp, feed_start):
    user = new_user(testapp)
    patched = testapp.patch_json(f"/users/{user['id']}", {"full_name": "Grace Hopper"}).json

    created, updated = feed(testapp, feed_start)
    assert (created["type"], created["data"]) == ("user.created", user)
    assert updated["type"] == "user.updated"
    assert updated["resource"] == f"/users/{user['id']}"
    assert updated["data"] == patched
    assert updated["data"]["version"] == 2


def test_a_patch_through_a_zero_padded_url_names_the_canonical_resource(testapp, feed_start):
    user = new_user(testapp)
    testapp.patch_json(f"/users/000{user['id']}", {"full_name": "x"})

    assert feed(testapp, feed_start)[-1]["resource"] == f"/users/{user['id']}"


def test_a_patch_that_changes_nothing_appends_no_change(testapp, feed_start):
    user = new_user(testapp)
    [created] = feed(testapp, feed_start)

    testapp.patch_json(f"/users/{user['id']}", {"username": user["username"]})

    assert_no_change_after(testapp, created["seq"])


def test_deleting_a_user_appends_user_deleted_with_null_data(testapp, feed_start):
    user = new_user(testapp)
    testapp.delete(f"/users/{user['id']}", status=204)

    deleted = feed(testapp, feed_start)[-1]
    assert deleted["type"] == "user.deleted"
    assert deleted["resource"] == f"/users/{user['id']}"
    assert deleted["data"] is None


def test_record_change_refuses_a_type_the_feed_does_not_have():
    with pytest.raises(ValueError, match=r"user\.renamed"):
        record_change(None, "user.renamed", "/users/1")


def test_without_the_counter_row_a_write_fails_rather_than_commit_without_its_change(
    testapp, app, feed_start
):
    connection = app.registry["dbsession_factory"].kw["bind"]  # the test's, rolled back after
    connection.exec_driver_sql("DELETE FROM feed_counter")

    response = testapp.post_json("/users", ADA, status=500)

    assert_problem(response, 500)
    assert testapp.get("/users", {"username": "ada"}).json["items"] == []
    assert_no_change_after(testapp, feed_start)


# -- nothing from a request that did not commit --------------------------------------------


def test_rejected_writes_of_every_kind_append_no_change(testapp, feed_start):
    new_user(testapp, username="taken", email="taken@example.com")
    user = new_user(testapp)
    url = f"/users/{user['id']}"
    [_, last] = feed(testapp, feed_start)

    testapp.post_json("/users", {"username": "taken", "email": "new@example.com"}, status=409)
    testapp.post_json("/users", {"username": "!"}, status=422)
    testapp.post("/users", b"{", content_type="application/json", status=400)
    testapp.post("/users", b"{}", content_type="text/plain", status=415)
    testapp.patch_json(url, {"username": "taken"}, status=409)
    testapp.patch_json(url, {"email": "bad"}, status=422)
    testapp.patch_json(url, {"full_name": "x"}, headers={"If-Match": '"9"'}, status=412)
    testapp.patch_json("/users/999999", {"full_name": "x"}, status=404)
    testapp.delete(url, headers={"If-Match": '"9"'}, status=412)
    testapp.delete("/users/999999", status=404)

    assert_no_change_after(testapp, last["seq"])


def attempts(request):
    """The attempts this app has made at the request's path so far, this one included."""
    made = request.registry.setdefault("attempts", Counter())
    made[request.path] += 1
    return made[request.path]


def create_and_record(request, attempt):
    """A real write and its change, as a view makes them."""
    name = f"{request.path.strip('/').replace('/', '-')}-{attempt}"
    row = insert_new(request.dbsession, User, {"username": name, "email": f"{name}@example.com"})
    record_change(request, "user.created", f"/users/{row.id}", {"id": row.id, "username": name})
    return row


def record_then_raise(request):
    create_and_record(request, attempts(request))
    raise RuntimeError("boom")


def record_then_return_400(request):
    create_and_record(request, attempts(request))
    return HTTPBadRequest("returned, not raised")


def record_then_conflict_on_the_first_attempt(request):
    attempt = attempts(request)
    row = create_and_record(request, attempt)
    if attempt == 1:
        raise StaleDataError("a concurrent change: replay the request")
    return {"id": row.id}


def record_then_conflict_every_time(request):
    create_and_record(request, attempts(request))
    raise StaleDataError("a concurrent change, on every attempt")


FAILING_VIEWS = {
    "/test/raise": record_then_raise,
    "/test/return-400": record_then_return_400,
    "/test/conflict-once": record_then_conflict_on_the_first_attempt,
    "/test/conflict-always": record_then_conflict_every_time,
}


@pytest.fixture
def client(app_settings, token, empty_tables):
    """The service with views that record a change and then fail; its requests really commit."""
    return with_token(app_with_views(app_settings, FAILING_VIEWS), token)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/test/raise", 500), ("/test/return-400", 400), ("/test/conflict-always", 503)],
)
def test_a_request_that_records_a_change_and_then_fails_appends_none(client, path, status):
    feed_start = feed_head(client)

    client.post(path, status=status)

    assert_no_change_after(client, feed_start)
    assert client.get("/users").json["items"] == []


def test_a_replayed_attempt_appends_only_the_changes_of_the_attempt_that_committed(client):
    feed_start = feed_head(client)

    response = client.post("/test/conflict-once", status=200)

    [change] = feed(client, feed_start)
    assert change["seq"] == feed_start + 1
    assert change["resource"] == f"/users/{response.json['id']}"
    assert change["data"]["username"] == "test-conflict-once-2"  # the second attempt's
