"""Reading the change feed, GET /changes: oldest first, numbered consecutively, paged by
``after`` and ``limit``, one range scan a poll; and a reader polling while writers write on a
real server sees every commit exactly once, in commit order. What each write appends:
test_changes.
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest

from tests.support.client import CLIENT_TIMEOUT, call, concurrently
from tests.support.factories import new_user
from tests.support.feed import feed
from tests.support.problems import assert_problem


def test_changes_come_oldest_first_numbered_consecutively(testapp, feed_start):
    users = [new_user(testapp, username=f"user{n}", email=f"u{n}@example.com") for n in range(3)]
    testapp.delete(f"/users/{users[1]['id']}", status=204)

    changes = feed(testapp, feed_start)
    assert [change["seq"] for change in changes] == [
        feed_start + 1,
        feed_start + 2,
        feed_start + 3,
        feed_start + 4,
    ]
    assert [change["type"] for change in changes] == ["user.created"] * 3 + ["user.deleted"]
    assert [change["resource"] for change in changes] == [
        f"/users/{user['id']}" for user in [*users, users[1]]
    ]
    assert all(set(change) == {"seq", "at", "type", "resource", "data"} for change in changes)


def test_next_after_is_the_last_seq_of_the_page_or_after_itself_when_the_page_is_empty(
    testapp, feed_start
):
    for n in range(3):
        new_user(testapp, username=f"user{n}", email=f"u{n}@example.com")

    def next_after(**params):
        return testapp.get("/changes", params).json["next_after"]

    assert next_after(after=feed_start, limit=2) == feed_start + 2
    assert next_after(after=feed_start + 2) == feed_start + 3
    assert testapp.get("/changes", {"after": feed_start + 3}).json == {
        "items": [],
        "next_after": feed_start + 3,
    }
    assert next_after(after=feed_start + 1000) == feed_start + 1000


def test_polling_with_next_after_visits_every_change_exactly_once(testapp, feed_start):
    for n in range(7):
        new_user(testapp, username=f"user{n}", email=f"u{n}@example.com")
    seen, after = [], feed_start
    for _ in range(10):  # bounded: 7 changes in pages of 3 take 4 polls
        page = testapp.get("/changes", {"after": after, "limit": 3}).json
        assert len(page["items"]) <= 3
        seen += page["items"]
        if not page["items"]:
            break
        after = page["next_after"]
    assert [change["seq"] for change in seen] == list(range(feed_start + 1, feed_start + 8))


def test_after_defaults_to_zero_and_limit_to_100(testapp, feed_start):
    for n in range(101):
        new_user(testapp, username=f"user{n:03}", email=f"u{n}@example.com")

    assert testapp.get("/changes").json == testapp.get("/changes?after=0&limit=100").json
    page = testapp.get(f"/changes?after={feed_start}").json
    assert [change["seq"] for change in page["items"]] == list(
        range(feed_start + 1, feed_start + 101)
    )


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


def test_limit_1000_is_allowed(testapp, feed_start):
    assert testapp.get(f"/changes?after={feed_start}&limit=1000").json == {
        "items": [],
        "next_after": feed_start,
    }


def test_a_poll_is_one_range_scan_of_seq_and_counts_nothing(testapp, feed_start, executed_sql):
    new_user(testapp)
    executed_sql.clear()

    testapp.get(f"/changes?after={feed_start}")

    [statement] = [s for s, _ in executed_sql if "SAVEPOINT" not in s]  # the tests' own
    assert statement.lstrip().upper().startswith("SELECT")
    assert "changes.seq >" in statement and "ORDER BY changes.seq" in statement
    assert "LIMIT" in statement.upper() and "COUNT(" not in statement.upper()


def test_openapi_documents_a_change_as_the_feed_returns_it(testapp):
    schemas = testapp.get("/openapi.json").json["components"]["schemas"]

    assert set(schemas["ChangePage"]["properties"]) == {"items", "next_after"}
    assert set(schemas["ChangeOut"]["properties"]) == {"seq", "at", "type", "resource", "data"}
    assert "membership.removed" in schemas["ChangeOut"]["properties"]["type"]["enum"]


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
    feed_start = earlier[-1]["seq"] if earlier else 0
    writers_done.clear()
    deadline = time.monotonic() + WRITING_SECONDS

    with ThreadPoolExecutor(max_workers=1) as reader:
        reading = reader.submit(follow, server, feed_start, writers_done)
        try:
            committed = concurrently(lambda w: write(server, w, deadline), range(WRITERS))
        finally:
            writers_done.set()
        seen, read_while_writing = reading.result(timeout=CLIENT_TIMEOUT * 10)

    expected = [change for changes in committed for change in changes]
    # Every seq once, none skipped: the reader missed nothing and saw nothing twice ...
    assert [change["seq"] for change in seen] == list(
        range(feed_start + 1, feed_start + 1 + len(seen))
    )
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
