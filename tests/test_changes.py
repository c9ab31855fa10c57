"""The change feed, GET /changes: every committed write exactly once, in commit order; nothing
from a request that did not commit.

In-process tests use ``testapp`` (each request commits on a SAVEPOINT of one rolled-back
connection); those that need requests which really fail, retry or commit build the app with a
few extra views, or run the real server.
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
from pyramid.httpexceptions import HTTPBadRequest
from sqlalchemy.orm.exc import StaleDataError

from myservice.api.changes import record_change
from myservice.data.models import User, insert_new
from tests.conftest import app_with_views, with_token
from tests.realserver import CLIENT_TIMEOUT, call, concurrently
from tests.test_users import ADA, assert_problem, create, executed_sql  # noqa: F401


def feed(testapp, after, limit=1000):
    return testapp.get("/changes", {"after": after, "limit": limit}).json["items"]


def head(testapp):
    """The seq of the last change so far: tests that really commit may have left some."""
    after = 0
    for _ in range(100):  # bounded: 100 pages of 1000
        page = testapp.get("/changes", {"after": after, "limit": 1000}).json
        if not page["items"]:
            return after
        after = page["next_after"]
    raise AssertionError("more than 100000 changes in the test database")


@pytest.fixture
def start(testapp):
    return head(testapp)


def assert_no_change_after(testapp, after):
    assert testapp.get("/changes", {"after": after}).json == {"items": [], "next_after": after}


# -- groups, memberships, bulk: the changes docs/design.md lists for each write --------------
def new_group(testapp, name="Ops", **fields):
    return testapp.post_json("/groups", {"name": name, **fields}, status=201).json


def join_all(testapp, pairs, start):
    """Each (group, user) joins; the seq of the feed's last change after that."""
    for group, user in pairs:
        testapp.put(f"/groups/{group['id']}/members/{user['id']}", status=201)
    return feed(testapp, start)[-1]["seq"]


def kinds(changes):
    return [(change["type"], change["resource"]) for change in changes]


def test_creating_patching_and_deleting_a_group_append_its_three_changes(testapp, start):
    group = new_group(testapp, description="first")
    path = f"/groups/{group['id']}"
    patched = testapp.patch_json(path, {"description": "second"}).json
    testapp.patch_json(path, {"description": "second"})  # changes nothing: appends nothing
    testapp.delete(path, status=204)

    created, updated, deleted = feed(testapp, start)
    assert (created["type"], created["resource"], created["data"]) == ("group.created", path, group)
    assert (updated["type"], updated["data"]) == ("group.updated", patched)
    assert (deleted["type"], deleted["resource"], deleted["data"]) == ("group.deleted", path, None)


def test_joining_appends_membership_added_and_the_group_with_its_new_count(testapp, start):
    group, user = new_group(testapp), create(testapp).json
    member = f"/groups/{group['id']}/members/{user['id']}"
    joined = testapp.put(member, status=201).json
    testapp.put(member, status=200)  # already a member: nothing changes, nothing appended

    changes = feed(testapp, start)[2:]
    assert kinds(changes) == [
        ("membership.added", member),
        ("group.updated", f"/groups/{group['id']}"),
    ]
    assert changes[0]["data"] == joined
    assert changes[1]["data"] == testapp.get(f"/groups/{group['id']}").json
    assert changes[1]["data"]["member_count"] == 1


def test_leaving_appends_membership_removed_and_the_group_with_its_new_count(testapp, start):
    group, user = new_group(testapp), create(testapp).json
    member = f"/groups/{group['id']}/members/{user['id']}"
    testapp.put(member, status=201)
    testapp.delete(member, status=204)

    removed, updated = feed(testapp, start)[4:]
    assert (removed["type"], removed["resource"], removed["data"]) == (
        "membership.removed",
        member,
        None,
    )
    assert updated["type"] == "group.updated"
    assert updated["data"]["member_count"] == 0


def test_deleting_a_user_appends_its_memberships_removed_its_groups_and_user_deleted(
    testapp, start
):
    ops, dev = new_group(testapp, "Ops"), new_group(testapp, "Dev")
    user = create(testapp).json
    after = join_all(testapp, [(ops, user), (dev, user)], start)
    testapp.delete(f"/users/{user['id']}", status=204)

    assert kinds(feed(testapp, after)) == [
        ("membership.removed", f"/groups/{ops['id']}/members/{user['id']}"),
        ("group.updated", f"/groups/{ops['id']}"),
        ("membership.removed", f"/groups/{dev['id']}/members/{user['id']}"),
        ("group.updated", f"/groups/{dev['id']}"),
        ("user.deleted", f"/users/{user['id']}"),
    ]


def test_deleting_a_group_appends_a_membership_removed_per_member_then_group_deleted(
    testapp, start
):
    group = new_group(testapp)
    ada = create(testapp, username="ada", email="ada@example.com").json
    grace = create(testapp).json
    after = join_all(testapp, [(group, ada), (group, grace)], start)
    testapp.delete(f"/groups/{group['id']}", status=204)

    assert kinds(feed(testapp, after)) == [
        ("membership.removed", f"/groups/{group['id']}/members/{ada['id']}"),
        ("membership.removed", f"/groups/{group['id']}/members/{grace['id']}"),
        ("group.deleted", f"/groups/{group['id']}"),
    ]


def test_a_bulk_create_appends_one_user_created_per_user_in_request_order(testapp, start):
    body = {"users": [{"username": f"bulk{n}", "email": f"bulk{n}@example.com"} for n in range(3)]}
    created = testapp.post_json("/users/bulk", body, status=201).json["items"]

    changes = feed(testapp, start)
    assert [change["type"] for change in changes] == ["user.created"] * 3
    assert [change["data"] for change in changes] == created


def test_a_rejected_bulk_or_group_write_appends_nothing(testapp, start):
    full = new_group(testapp, "Ops", max_members=0)
    user = create(testapp).json
    after = feed(testapp, start)[-1]["seq"]
    testapp.post_json("/groups", {"name": "OPS"}, status=409)
    testapp.put(f"/groups/{full['id']}/members/{user['id']}", status=409)  # the group is full
    testapp.put(f"/groups/{full['id'] + 1000}/members/{user['id']}", status=404)
    body = {
        "users": [
            {"username": "fresh", "email": "fresh@example.com"},
            {"username": "grace", "email": "x@example.com"},
        ]
    }
    testapp.post_json("/users/bulk", body, status=409)

    assert feed(testapp, after) == []


# -- every user change ---------------------------------------------------------------------


def test_creating_a_user_appends_user_created_with_the_user_as_get_shows_it(testapp, start):
    response = testapp.post_json("/users", ADA, status=201)

    [change] = feed(testapp, start)
    assert change["type"] == "user.created"
    assert change["resource"] == f"/users/{response.json['id']}"
    assert change["data"] == response.json == testapp.get(change["resource"]).json
    assert change["seq"] == start + 1
    assert change["at"].endswith("Z")


def test_patching_a_user_appends_user_updated_with_the_user_after_the_patch(testapp, start):
    user = create(testapp).json
    patched = testapp.patch_json(f"/users/{user['id']}", {"full_name": "Grace Hopper"}).json

    created, updated = feed(testapp, start)
    assert (created["type"], created["data"]) == ("user.created", user)
    assert updated["type"] == "user.updated"
    assert updated["resource"] == f"/users/{user['id']}"
    assert updated["data"] == patched
    assert updated["data"]["version"] == 2


def test_a_patch_through_a_zero_padded_url_names_the_canonical_resource(testapp, start):
    user = create(testapp).json
    testapp.patch_json(f"/users/000{user['id']}", {"full_name": "x"})

    assert feed(testapp, start)[-1]["resource"] == f"/users/{user['id']}"


def test_a_patch_that_changes_nothing_appends_no_change(testapp, start):
    user = create(testapp).json
    [created] = feed(testapp, start)

    testapp.patch_json(f"/users/{user['id']}", {"username": user["username"]})

    assert_no_change_after(testapp, created["seq"])


def test_deleting_a_user_appends_user_deleted_with_null_data(testapp, start):
    user = create(testapp).json
    testapp.delete(f"/users/{user['id']}", status=204)

    deleted = feed(testapp, start)[-1]
    assert deleted["type"] == "user.deleted"
    assert deleted["resource"] == f"/users/{user['id']}"
    assert deleted["data"] is None


def test_record_change_refuses_a_type_the_feed_does_not_have():
    with pytest.raises(ValueError, match=r"user\.renamed"):
        record_change(None, "user.renamed", "/users/1")


def test_without_the_counter_row_a_write_fails_rather_than_commit_without_its_change(
    testapp, app, start
):
    connection = app.registry["dbsession_factory"].kw["bind"]  # the test's, rolled back after
    connection.exec_driver_sql("DELETE FROM feed_counter")

    response = testapp.post_json("/users", ADA, status=500)

    assert_problem(response, 500)
    assert testapp.get("/users", {"username": "ada"}).json["items"] == []
    assert_no_change_after(testapp, start)


# -- reading the feed ----------------------------------------------------------------------


def test_changes_come_oldest_first_numbered_consecutively(testapp, start):
    users = [create(testapp, username=f"user{n}", email=f"u{n}@example.com").json for n in range(3)]
    testapp.delete(f"/users/{users[1]['id']}", status=204)

    changes = feed(testapp, start)
    assert [change["seq"] for change in changes] == [start + 1, start + 2, start + 3, start + 4]
    assert [change["type"] for change in changes] == ["user.created"] * 3 + ["user.deleted"]
    assert [change["resource"] for change in changes] == [
        f"/users/{user['id']}" for user in [*users, users[1]]
    ]
    assert all(set(change) == {"seq", "at", "type", "resource", "data"} for change in changes)


def test_next_after_is_the_last_seq_of_the_page_or_after_itself_when_the_page_is_empty(
    testapp, start
):
    for n in range(3):
        create(testapp, username=f"user{n}", email=f"u{n}@example.com")

    def next_after(**params):
        return testapp.get("/changes", params).json["next_after"]

    assert next_after(after=start, limit=2) == start + 2
    assert next_after(after=start + 2) == start + 3
    assert testapp.get("/changes", {"after": start + 3}).json == {
        "items": [],
        "next_after": start + 3,
    }
    assert next_after(after=start + 1000) == start + 1000


def test_polling_with_next_after_visits_every_change_exactly_once(testapp, start):
    for n in range(7):
        create(testapp, username=f"user{n}", email=f"u{n}@example.com")
    seen, after = [], start
    for _ in range(10):  # bounded: 7 changes in pages of 3 take 4 polls
        page = testapp.get("/changes", {"after": after, "limit": 3}).json
        assert len(page["items"]) <= 3
        seen += page["items"]
        if not page["items"]:
            break
        after = page["next_after"]
    assert [change["seq"] for change in seen] == list(range(start + 1, start + 8))


def test_after_defaults_to_zero_and_limit_to_100(testapp, start):
    for n in range(101):
        create(testapp, username=f"user{n:03}", email=f"u{n}@example.com")

    assert testapp.get("/changes").json == testapp.get("/changes?after=0&limit=100").json
    page = testapp.get(f"/changes?after={start}").json
    assert [change["seq"] for change in page["items"]] == list(range(start + 1, start + 101))


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=1.5", "after"),
        ("after=1.0", "after"),
        ("after=%2B1", "after"),
        ("after=1_0", "after"),
        ("after=", "after"),
        ("after=9223372036854775808", "after"),
        ("after=1&after=2", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_a_bad_after_or_limit_is_400_naming_it(testapp, query, parameter):
    problem = assert_problem(testapp.get(f"/changes?{query}", status=400), 400)
    assert [error["parameter"] for error in problem["errors"]] == [parameter]
    assert all(error["detail"] for error in problem["errors"])


def test_limit_1000_is_allowed(testapp, start):
    assert testapp.get(f"/changes?after={start}&limit=1000").json == {
        "items": [],
        "next_after": start,
    }


def test_a_poll_is_one_range_scan_of_seq_and_counts_nothing(testapp, start, executed_sql):  # noqa: F811
    create(testapp)
    executed_sql.clear()

    testapp.get(f"/changes?after={start}")

    [statement] = [s for s, _ in executed_sql if "SAVEPOINT" not in s]  # the tests' own
    assert statement.lstrip().upper().startswith("SELECT")
    assert "changes.seq >" in statement and "ORDER BY changes.seq" in statement
    assert "LIMIT" in statement.upper() and "COUNT(" not in statement.upper()


def test_openapi_documents_a_change_as_the_feed_returns_it(testapp):
    schemas = testapp.get("/openapi.json").json["components"]["schemas"]

    assert set(schemas["ChangePage"]["properties"]) == {"items", "next_after"}
    assert set(schemas["ChangeOut"]["properties"]) == {"seq", "at", "type", "resource", "data"}
    assert "membership.removed" in schemas["ChangeOut"]["properties"]["type"]["enum"]


# -- nothing from a request that did not commit --------------------------------------------


def test_rejected_writes_of_every_kind_append_no_change(testapp, start):
    create(testapp, username="taken", email="taken@example.com")
    user = create(testapp).json
    url = f"/users/{user['id']}"
    [_, last] = feed(testapp, start)

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
    start = head(client)

    client.post(path, status=status)

    assert_no_change_after(client, start)
    assert client.get("/users").json["items"] == []


def test_a_replayed_attempt_appends_only_the_changes_of_the_attempt_that_committed(client):
    start = head(client)

    response = client.post("/test/conflict-once", status=200)

    [change] = feed(client, start)
    assert change["seq"] == start + 1
    assert change["resource"] == f"/users/{response.json['id']}"
    assert change["data"]["username"] == "test-conflict-once-2"  # the second attempt's


# -- many writers, one reader, a real server -----------------------------------------------

WRITERS = 8
#: A writer's first operations, done whatever the clock says: a user created, patched twice and
#: deleted, then one created, patched twice and kept (7 commits). No lower bound on what the
#: writers do is left to the speed of the machine.
MIN_OPS = 8
OPS_PER_WRITER = 40  # bounded in count ...
WRITING_SECONDS = 4  # ... and in time, past MIN_OPS
MAX_POLLS = 20_000  # the reader's bound; it stops long before


def expected_change(method, path, reply):
    """The change a successful write must have appended."""
    if method == "POST":
        return ("user.created", f"/users/{reply.json()['id']}", reply.json())
    if method == "PATCH":
        return ("user.updated", path, reply.json())
    return ("user.deleted", path, None)


def write(service, writer, deadline):
    """Create users, patch each twice, delete every other one: the changes it committed."""
    committed, path = [], None
    for op in range(OPS_PER_WRITER):
        if op >= MIN_OPS and time.monotonic() > deadline:
            break
        step = op % 4
        if step == 0:
            name = f"w{writer}-{op}-{time.monotonic_ns()}"
            method, url, body = "POST", "/users", {"username": name, "email": f"{name}@x.org"}
        elif step < 3:
            method, url, body = "PATCH", path, {"full_name": f"writer {writer} op {op}"}
        elif op % 8 == 3:
            method, url, body = "DELETE", path, None
        else:
            continue  # this user is kept, so the final state has users in it
        reply = call(service, method, url, body)
        assert 200 <= reply.status < 300, (method, url, reply.status, reply.body)
        if method == "POST":
            path = f"/users/{reply.json()['id']}"
        committed.append(expected_change(method, url, reply))
    return committed


def follow(service, after, writers_done):
    """Poll with ``after`` = the last seq seen, until the writers are done and the feed is read:
    the changes seen, and how many of them were read while the writers were still writing."""
    seen, read_while_writing = [], 0
    for _ in range(MAX_POLLS):
        finished = writers_done.is_set()  # before the poll: then the poll sees every commit
        reply = call(service, "GET", f"/changes?after={after}&limit=7")
        assert reply.status == 200, reply.body
        page = reply.json()
        for change in page["items"]:
            assert change["seq"] > after, "a change appeared below one already seen"
            after = change["seq"]
            seen.append(change)
        assert page["next_after"] == after
        if not finished:
            read_while_writing += len(page["items"])
        if finished and not page["items"]:
            return seen, read_while_writing
    raise AssertionError(f"still reading the feed after {MAX_POLLS} polls")


def test_a_reader_polling_with_after_sees_every_commit_of_concurrent_writers_exactly_once(
    server,
):
    writers_done = threading.Event()
    writers_done.set()  # for now: read up to the head
    earlier, _ = follow(server, 0, writers_done)
    start = earlier[-1]["seq"] if earlier else 0
    writers_done.clear()
    deadline = time.monotonic() + WRITING_SECONDS

    with ThreadPoolExecutor(max_workers=1) as reader:
        reading = reader.submit(follow, server, start, writers_done)
        try:
            committed = concurrently(lambda w: write(server, w, deadline), range(WRITERS))
        finally:
            writers_done.set()
        seen, read_while_writing = reading.result(timeout=CLIENT_TIMEOUT * 10)

    expected = [change for changes in committed for change in changes]
    # Every seq once, none skipped: the reader missed nothing and saw nothing twice ...
    assert [change["seq"] for change in seen] == list(range(start + 1, start + 1 + len(seen)))
    # ... and what it saw is exactly what the writers were told they committed.
    assert Counter(repr((c["type"], c["resource"], c["data"])) for c in seen) == Counter(
        repr(change) for change in expected
    )
    # The writers wrote at once, not in turn: in the feed their commits interleave (one after
    # another they would change hands WRITERS - 1 times). Counted, not timed.
    writer_of = {resource: w for w, changes in enumerate(committed) for _, resource, _ in changes}
    writers = [writer_of[change["resource"]] for change in seen]
    assert sum(a != b for a, b in pairwise(writers)) > WRITERS - 1, writers
    assert read_while_writing > 0  # and the reader read while they wrote

    # Replaying the feed rebuilds the final state of every user the writers touched.
    state = {}
    for change in seen:
        if change["type"] == "user.deleted":
            del state[change["resource"]]
        else:
            state[change["resource"]] = change["data"]
    for resource in {change["resource"] for change in seen}:
        reply = call(server, "GET", resource)
        assert (reply.status, reply.json() if reply.status == 200 else None) == (
            (200, state[resource]) if resource in state else (404, None)
        )
    assert state  # some users survived, so the comparison above compared data
