"""Concurrent writers against the real server (``pserve``, real threads, real commits).

Every test reads the invariants back from the tables themselves, not just the status codes:
``member_count`` equals the number of memberships, never exceeds ``max_members``, and a user is
in a group at most once. Runs on the session's database (SQLite or PostgreSQL); the module
deletes every row it committed at the end.
"""

import random
from collections import Counter

from sqlalchemy import select

from myservice.data.models import User
from tests.support.client import call, concurrently
from tests.support.database import assert_invariants, short_lived_engine
from tests.support.factories import new_group, new_users, unique
from tests.support.problems import assert_problem

#: Upper bound of the random workload: requests in all, and client threads.
STORM_REQUESTS = 240
STORM_CLIENTS = 8


def test_40_clients_joining_a_group_of_10_give_exactly_10_members(server, db_url):
    group = new_group(server, max_members=10)
    user_ids = new_users(server, 40)
    path = f"/groups/{group['id']}/members/{{}}"

    replies = concurrently(lambda user_id: call(server, "PUT", path.format(user_id)), user_ids)

    assert Counter(reply.status for reply in replies) == {201: 10, 409: 30}, [
        reply.body for reply in replies if reply.status not in (201, 409)
    ]
    for reply in replies:
        if reply.status == 409:
            assert_problem(reply, 409)
    joined = sorted(u for u, reply in zip(user_ids, replies, strict=True) if reply.status == 201)
    assert assert_invariants(db_url, [group["id"]]) == {group["id"]: 10}
    after = call(server, "GET", f"/groups/{group['id']}").json()
    assert (after["member_count"], after["version"]) == (10, 1 + 10)
    members = call(server, "GET", f"/groups/{group['id']}/members").json()["items"]
    assert [member["id"] for member in members] == joined


def test_20_clients_creating_one_username_make_one_user_and_no_5xx(server, db_url):
    username = unique("same")
    bodies = [{"username": username, "email": f"{username}.{n}@example.org"} for n in range(20)]

    replies = concurrently(lambda body: call(server, "POST", "/users", body), bodies)

    assert Counter(reply.status for reply in replies) == {201: 1, 409: 19}
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        stored = connection.scalars(select(User.id).where(User.username == username)).all()
    [created] = [reply.json() for reply in replies if reply.status == 201]
    assert stored == [created["id"]]


def test_concurrent_patches_with_one_if_match_have_exactly_one_winner(server):
    group = new_group(server)
    path = f"/groups/{group['id']}"
    names = [unique("renamed") for _ in range(10)]

    replies = concurrently(
        lambda name: call(server, "PATCH", path, {"name": name}, headers={"If-Match": '"1"'}),
        names,
    )

    assert Counter(reply.status for reply in replies) == {200: 1, 412: 9}
    [winner] = [reply.json() for reply in replies if reply.status == 200]
    assert call(server, "GET", path).json() == winner
    assert winner["version"] == 2


def test_overlapping_bulk_creates_sharing_a_username_commit_one_whole_and_nothing_else(
    server, db_url
):
    shared = unique("shared")
    batches = [
        [{"username": shared, "email": f"{shared}.{side}@example.org"}]
        + [{"username": unique(side), "email": f"{unique(side)}@example.org"} for _ in range(30)]
        for side in ("left", "right")
    ]

    replies = concurrently(
        lambda users: call(server, "POST", "/users/bulk", {"users": users}), batches
    )

    assert sorted(reply.status for reply in replies) == [201, 409], [r.body for r in replies]
    [loser] = [n for n, reply in enumerate(replies) if reply.status == 409]
    assert assert_problem(replies[loser], 409)["errors"][0]["pointer"] == "/users/0/username"
    usernames = {user["username"] for batch in batches for user in batch}
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        stored = set(connection.scalars(select(User.username).where(User.username.in_(usernames))))
    assert stored == {user["username"] for user in batches[1 - loser]}


def test_a_storm_of_joins_leaves_user_deletions_and_limit_changes_keeps_every_invariant(
    server, db_url
):
    groups = [new_group(server, max_members=limit)["id"] for limit in (2, 5, 8, None)]
    user_ids = new_users(server, 40)
    rng = random.Random(20261123)

    def request_for():
        group_id, user_id = rng.choice(groups), rng.choice(user_ids)
        kind = rng.choices(["join", "leave", "delete_user", "limit"], weights=[10, 5, 1, 2])[0]
        if kind == "join":
            return ("PUT", f"/groups/{group_id}/members/{user_id}", None)
        if kind == "leave":
            return ("DELETE", f"/groups/{group_id}/members/{user_id}", None)
        if kind == "delete_user":
            return ("DELETE", f"/users/{user_id}", None)
        return ("PATCH", f"/groups/{group_id}", {"max_members": rng.choice([1, 3, 6, None])})

    plan = [request_for() for _ in range(STORM_REQUESTS)]
    lanes = [plan[n::STORM_CLIENTS] for n in range(STORM_CLIENTS)]

    def run(lane):
        return [(method, call(server, method, path, body).status) for method, path, body in lane]

    statuses = Counter(pair for lane in concurrently(run, lanes) for pair in lane)

    allowed = {
        "PUT": {200, 201, 404, 409},
        "DELETE": {204, 404},
        "PATCH": {200, 409},
    }
    assert all(status in allowed[method] for method, status in statuses), statuses
    assert statuses[("PUT", 201)] > 0 and statuses[("DELETE", 204)] > 0, statuses
    final = assert_invariants(db_url, groups)
    for group_id, member_count in final.items():
        group = call(server, "GET", f"/groups/{group_id}").json()
        assert group["member_count"] == member_count
        listed = call(server, "GET", f"/groups/{group_id}/members?limit=200").json()["items"]
        assert len(listed) == member_count
