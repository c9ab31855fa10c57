"""The whole API through PgBouncer in transaction pooling mode (``myservice.pgbouncer = true``).

The test starts its own PgBouncer (tests/support/pgbouncer.py) in front of the session's PostgreSQL
database and the real server (``pserve``) with ``DATABASE_URL`` through it. PgBouncer gets
fewer server connections than the service has threads, so it lends each server connection to
several of the service's connections, statement by statement outside a transaction: what
breaks a service that relies on session state. And its server connections run in
America/New_York, standing for a PostgreSQL whose default zone is not UTC.

What would break without the setting: psycopg prepares a statement after its fifth execution
on a connection, and PgBouncer then sends the next one to a server connection that never saw
it ("prepared statement "_pg3_0" does not exist") or that another client prepared it on ("...
already exists"); PgBouncer refuses libpq's startup ``options`` that carry ``TimeZone=UTC``,
and without them timestamps would come back in New York time, not with ``Z``.
"""

from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from myservice.data.engine import make_engine
from tests.support.client import call, concurrently, created
from tests.support.database import assert_invariants, delete_all_rows, short_lived_engine
from tests.support.factories import new_group, new_user, new_users, unique
from tests.support.feed import feed, feed_head
from tests.support.pgbouncer import running_pgbouncer
from tests.support.problems import assert_problem
from tests.support.servers import running_server

#: Server connections PgBouncer may open: fewer than the service's 4 (development.ini).
SERVER_CONNECTIONS = 2

SERVER_TIME_ZONE = "America/New_York"


@pytest.fixture(scope="module")
def bouncer(db_url, postgres_only, tmp_path_factory):
    with running_pgbouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        db_url,
        pool_size=SERVER_CONNECTIONS,
        server_time_zone=SERVER_TIME_ZONE,
    ) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def server(bouncer, db_url, token, tmp_path_factory):
    """The real service, its database through PgBouncer; every row it committed is deleted."""
    directory, overrides = tmp_path_factory.mktemp("server"), {"myservice.pgbouncer": "true"}
    try:
        with running_server(directory, bouncer.url, overrides, token=token) as running:
            yield running
    finally:
        delete_all_rows(db_url)


def transactions_through(bouncer, database):
    """How many transactions PgBouncer has passed to ``database`` so far."""
    (stats,) = [row for row in bouncer.show("STATS") if row["database"] == database]
    return stats["total_xact_count"]


def collect_pages(server, path):
    """Every item of a paginated collection, following each page's ``Link``; bounded."""
    items = []
    for _ in range(100):
        reply = call(server, "GET", path)
        assert reply.status == 200, reply.body
        page = reply.json()
        items += page["items"]
        if page["next_cursor"] is None:
            assert "Link" not in reply.headers
            return items
        link = reply.headers["Link"]
        assert link.startswith("<") and link.endswith('>; rel="next"'), link
        url = urlsplit(link[1 : link.index(">")])
        path = f"{url.path}?{url.query}"
    pytest.fail(f"more than 100 pages at {path}")


# -- the setup is what it claims -------------------------------------------------------------


def test_pgbouncer_pools_by_transaction_and_its_server_connections_run_in_new_york_time(
    bouncer,
):
    with short_lived_engine(bouncer.url) as engine, engine.connect() as connection:
        zone = connection.execute(text("SHOW TimeZone")).scalar()
    pools = bouncer.show("POOLS")

    assert zone == SERVER_TIME_ZONE
    assert {pool["pool_mode"] for pool in pools if pool["database"] != "pgbouncer"} == {
        "transaction"
    }


def test_clients_repeating_one_read_go_through_pgbouncer_sharing_its_connections(server, bouncer):
    """Four clients each read the same user 15 times at once: each of the service's connections
    runs that SELECT past psycopg's prepare threshold (5), on server connections it shares."""
    database = make_url(bouncer.url).database
    path = f"/users/{new_user(server)['id']}"
    before = transactions_through(bouncer, database)

    batches = concurrently(lambda _: [call(server, "GET", path) for _ in range(15)], range(4))

    replies = [reply for batch in batches for reply in batch]
    assert [reply.status for reply in replies] == [200] * 60
    assert len({reply.body for reply in replies}) == 1
    assert transactions_through(bouncer, database) >= before + 60
    clients = [row for row in bouncer.show("CLIENTS") if row["database"] == database]
    servers = [row for row in bouncer.show("SERVERS") if row["database"] == database]
    assert len(clients) > SERVER_CONNECTIONS >= len(servers) >= 1


# -- the API -------------------------------------------------------------------------------


def test_users_crud_through_pgbouncer(server):
    user = new_user(server, full_name="Ada")
    path = f"/users/{user['id']}"
    assert user["created_at"].endswith("Z") and user["updated_at"].endswith("Z")

    assert call(server, "GET", path).json() == user
    assert call(server, "GET", path, headers={"If-None-Match": '"1"'}).status == 304
    by_name = call(server, "GET", f"/users?username={user['username'].upper()}").json()
    assert by_name["items"] == [user]

    patched = call(server, "PATCH", path, {"full_name": "Augusta Ada King"}, {"If-Match": '"1"'})
    assert patched.status == 200, patched.body
    assert patched.json()["version"] == 2 and patched.json()["updated_at"].endswith("Z")
    assert patched.headers["ETag"] == '"2"'
    assert_problem(call(server, "DELETE", path, headers={"If-Match": '"1"'}), 412)

    assert call(server, "DELETE", path, headers={"If-Match": '"2"'}).status == 204
    assert_problem(call(server, "GET", path), 404)


def test_taken_and_invalid_users_are_problems_through_pgbouncer(server):
    user = new_user(server)

    taken = call(server, "POST", "/users", {"username": user["username"], "email": "x@ex.org"})
    invalid = call(server, "POST", "/users", {"username": "x"})

    assert assert_problem(taken, 409)["detail"]
    assert {error["pointer"] for error in assert_problem(invalid, 422)["errors"]} == {
        "/username",
        "/email",
    }


def test_bulk_create_and_every_page_of_users_through_pgbouncer(server):
    names = [unique("b") for _ in range(30)]
    body = {"users": [{"username": name, "email": f"{name}@ex.org"} for name in names]}

    items = created(server, "/users/bulk", body)["items"]
    clash = call(
        server,
        "POST",
        "/users/bulk",
        {"users": [body["users"][0], {"username": "fresh1", "email": "f1@ex.org"}]},
    )
    listed = collect_pages(server, "/users?limit=7")

    assert [item["username"] for item in items] == names
    assert assert_problem(clash, 409)["errors"] == [
        {"pointer": "/users/0/username", "detail": "username is taken"}
    ]
    assert call(server, "GET", "/users?username=fresh1").json()["items"] == []  # all or nothing
    ids = [user["id"] for user in listed]
    assert ids == sorted(set(ids))
    assert {item["id"] for item in items} <= set(ids)


def test_groups_and_memberships_through_pgbouncer(server):
    ada, bob, eve = (new_user(server) for _ in range(3))
    group = new_group(server, unique("Ops"), max_members=2)
    members = f"/groups/{group['id']}/members"

    assert call(server, "PUT", f"{members}/{ada['id']}").status == 201
    assert call(server, "PUT", f"{members}/{ada['id']}").status == 200  # already a member
    assert call(server, "PUT", f"{members}/{bob['id']}").status == 201
    assert_problem(call(server, "PUT", f"{members}/{eve['id']}"), 409)  # full
    fetched = call(server, "GET", f"/groups/{group['id']}")
    assert fetched.json()["member_count"] == 2 and fetched.headers["ETag"] == '"3"'
    assert [u["id"] for u in collect_pages(server, f"{members}?limit=1")] == [ada["id"], bob["id"]]
    assert [g["id"] for g in collect_pages(server, f"/users/{ada['id']}/groups")] == [group["id"]]

    patched = call(
        server, "PATCH", f"/groups/{group['id']}", {"max_members": 1}, {"If-Match": '"3"'}
    )
    assert_problem(patched, 409)  # below member_count
    assert call(server, "DELETE", f"{members}/{bob['id']}").status == 204
    assert_problem(call(server, "DELETE", f"{members}/{bob['id']}"), 404)
    assert call(server, "DELETE", f"/groups/{group['id']}").status == 204
    assert call(server, "GET", f"/users/{ada['id']}/groups").json()["items"] == []


def test_the_change_feed_through_pgbouncer_lists_each_write_once_in_order(server):
    start = feed_head(server)
    user = new_user(server)
    group = new_group(server, unique("Feed"))
    assert call(server, "PUT", f"/groups/{group['id']}/members/{user['id']}").status == 201
    assert call(server, "DELETE", f"/users/{user['id']}").status == 204

    changes = feed(server, start)

    assert [change["type"] for change in changes] == [
        "user.created",
        "group.created",
        "membership.added",
        "group.updated",
        "membership.removed",
        "group.updated",
        "user.deleted",
    ]
    assert [change["seq"] for change in changes] == list(range(start + 1, start + 8))
    assert all(change["at"].endswith("Z") for change in changes)
    assert changes[0]["data"] == user


def test_an_idempotency_key_replays_through_pgbouncer(server):
    name, key = unique("idem"), unique("key")
    body = {"username": name, "email": f"{name}@ex.org"}

    first = call(server, "POST", "/users", body, {"Idempotency-Key": key})
    again = call(server, "POST", "/users", body, {"Idempotency-Key": key})
    other = call(server, "POST", "/users", {**body, "full_name": "x"}, {"Idempotency-Key": key})

    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert_problem(other, 422)
    assert len(call(server, "GET", f"/users?username={name}").json()["items"]) == 1


def test_concurrent_repeats_of_one_key_create_one_user_through_pgbouncer(server):
    name, key = unique("race"), unique("key")
    body = {"username": name, "email": f"{name}@ex.org"}

    replies = concurrently(
        lambda _: call(server, "POST", "/users", body, {"Idempotency-Key": key}), range(6)
    )

    assert {reply.status for reply in replies} == {201}
    assert len({reply.body for reply in replies}) == 1
    assert len(call(server, "GET", f"/users?username={name}").json()["items"]) == 1


# -- concurrent writers --------------------------------------------------------------------


def test_concurrent_writers_through_pgbouncer_keep_the_invariants_and_the_feed(server, db_url):
    group = new_group(server, max_members=5)
    user_ids = new_users(server, 12)
    start = feed_head(server)

    def write(n):
        if n % 2:
            return call(server, "PUT", f"/groups/{group['id']}/members/{user_ids[n]}")
        return call(
            server, "POST", "/users", {"username": unique("w"), "email": f"{unique('w')}@ex.org"}
        )

    replies = concurrently(write, range(12))

    joins = [reply.status for n, reply in enumerate(replies) if n % 2]
    assert sorted(joins) == [201] * 5 + [409]
    assert [reply.status for n, reply in enumerate(replies) if not n % 2] == [201] * 6
    assert assert_invariants(db_url, [group["id"]]) == {group["id"]: 5}
    changes = feed(server, start)
    assert [change["seq"] for change in changes] == list(range(start + 1, start + len(changes) + 1))
    assert sum(change["type"] == "user.created" for change in changes) == 6
    assert sum(change["type"] == "membership.added" for change in changes) == 5


# -- the setting ---------------------------------------------------------------------------


def test_the_setting_also_works_straight_to_postgresql(db_url, postgres_only):
    engine = make_engine({"sqlalchemy.url": db_url, "myservice.pgbouncer": "true"})
    try:
        with engine.connect() as connection:
            zone = connection.execute(text("SHOW TimeZone")).scalar()
            threshold = connection.connection.driver_connection.prepare_threshold
    finally:
        engine.dispose()
    assert (zone, threshold) == ("UTC", None)


def test_the_setting_refuses_libpq_options_that_pgbouncer_would_refuse():
    from pyramid.exceptions import ConfigurationError

    url = "postgresql://u@db.internal:6432/app?options=-c%20search_path%3Dapp"
    with pytest.raises(ConfigurationError, match="ALTER ROLE"):
        make_engine({"sqlalchemy.url": url, "myservice.pgbouncer": "true"})
