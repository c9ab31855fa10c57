"""Reads on a streaming replica, with read-your-writes (``myservice.data.replicas``,
``myservice.edge.consistency``).

The PostgreSQL cases run on a primary and a hot standby the suite builds itself
(``tests.support.replicas``), each case directly and through PgBouncer (one in front of each
server). Replay is paused with ``pg_wal_replay_pause()`` so that the standby's lag is a fact of
the test, not of timing; the standby is really stopped and started.
"""

import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

import myservice
from myservice.data.errors import BadSettings
from myservice.data.replicamonitor import lsn_number
from myservice.edge.consistency import HEADER, position_of, token
from tests.support.app import with_token
from tests.support.client import call
from tests.support.database import migrate, new_token
from tests.support.pgbouncer import running_pgbouncer
from tests.support.replicas import PostgresBinariesMissing, running_pair
from tests.support.servers import running_production_server
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import eventually

#: Seconds any wait of these tests may last (each a bounded loop).
DEADLINE = 20


@pytest.fixture(scope="module")
def pair():
    try:
        with running_pair() as running:
            migrate(running.primary.url(), "upgrade", "head")
            yield running
    except PostgresBinariesMissing as reason:
        pytest.skip(f"a primary and a standby cannot be built here: {reason}")


@pytest.fixture(scope="module")
def secret(pair):
    return new_token(pair.primary.url(), "replicas", ["read", "write", "metrics"])


@dataclass
class Route:
    """How the service reaches the pair: its URLs and settings, and the proxy in front of the
    standby (``tests.support.tcpproxy``), which a test may stall."""

    primary_url: str
    replica_url: str
    settings: dict
    proxy: TcpProxy


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def route(request, pair, tmp_path_factory):
    """The service's way to the pair: directly, or through a PgBouncer in front of each server;
    the standby always behind a ``TcpProxy``."""
    with TcpProxy(("127.0.0.1", pair.standby.port)) as proxy:
        proxied = make_url(pair.standby.url()).set(port=proxy.port)
        standby_url = proxied.render_as_string(hide_password=False)
        if request.param == "direct":
            yield Route(pair.primary.url(), standby_url, {}, proxy)
            return
        primary_dir = tmp_path_factory.mktemp("bouncer-primary")
        standby_dir = tmp_path_factory.mktemp("bouncer-standby")
        with (
            running_pgbouncer(primary_dir, pair.primary.url(), pool_size=4) as to_primary,
            running_pgbouncer(standby_dir, standby_url, pool_size=4) as to_standby,
        ):
            settings = {"myservice.pgbouncer": "true"}
            yield Route(to_primary.url, to_standby.url, settings, proxy)


@contextmanager
def replicated(app_settings, route, secret, **settings):
    """The service on the pair, reads on the standby, its engines disposed (and so its
    monitor stopped) afterwards; once the monitor has seen the standby up."""
    app = myservice.main(
        {},
        **{
            **app_settings,
            "sqlalchemy.url": route.primary_url,
            "myservice.replica_urls": route.replica_url,
            "myservice.metrics_access": "token",
            **route.settings,
            **settings,
        },
    )
    client = with_token(app, secret)
    replicas = app.registry["replicas"]
    try:
        client.get("/users?limit=1")  # the first read starts the monitor
        eventually(lambda: replica_state(client) == "up", "the standby to be up")
        yield client, replicas
    finally:
        for database in replicas.databases:
            database.engine.dispose()


def replica_state(client):
    return client.get("/health/ready").json["replicas"][0]["state"]


def reads(replicas):
    """{database name: reads served so far}."""
    return {database.name: database.reads for database in replicas.databases}


def new_user(client, **headers):
    name = f"u{uuid.uuid4().hex[:12]}"
    return client.post_json(
        "/users", {"username": name, "email": f"{name}@example.com"}, headers=headers
    )


@pytest.fixture
def paused(pair):
    """The standby's replay paused for the test, resumed (and caught up) afterwards."""
    pair.pause_replay()
    try:
        yield pair
    finally:
        pair.resume_replay()
        pair.caught_up()


def test_a_token_read_is_fresh_while_replay_is_paused_and_from_the_replica_once_resumed(
    app_settings, route, secret, pair
):
    with replicated(app_settings, route, secret, **{"myservice.max_replica_lag_ms": "600000"}) as (
        client,
        replicas,
    ):
        pair.pause_replay()
        try:
            created = new_user(client)
            written = created.headers[HEADER]
            location = created.headers["Location"]
            # Without the token the standby serves it: it has not replayed the create, and
            # a read there answers the position it saw, which is before the create's.
            client.get(location, status=404)
            seen = client.get("/users?limit=1").headers[HEADER]
            assert position_of(seen) < position_of(written)
            before = reads(replicas)
            fresh = client.get(location, headers={HEADER: written})
            assert fresh.json["id"] == created.json["id"]
            assert reads(replicas)["primary"] == before["primary"] + 1
            assert replicas.fallbacks["position"] >= 1
        finally:
            pair.resume_replay()
        pair.caught_up()
        before = reads(replicas)
        again = client.get(location, headers={HEADER: written})
        assert again.json == fresh.json
        assert reads(replicas)["replica-1"] == before["replica-1"] + 1
        assert position_of(again.headers[HEADER]) >= position_of(written)


def test_an_untokened_read_goes_to_the_primary_once_the_replica_lags_beyond_the_bound(
    app_settings, route, secret, paused
):
    with replicated(app_settings, route, secret, **{"myservice.max_replica_lag_ms": "300"}) as (
        client,
        replicas,
    ):
        created = new_user(client)
        eventually(lambda: replica_state(client) == "lagging", "the standby to be lagging")
        lag = client.get("/health/ready").json["replicas"][0]["lag_ms"]
        assert lag > 300
        before = reads(replicas)
        assert client.get(created.headers["Location"]).json["id"] == created.json["id"]
        assert reads(replicas)["primary"] == before["primary"] + 1
        assert replicas.fallbacks["lag"] >= 1
        metrics = client.get("/metrics").text
        assert 'myservice_replica_state{replica="replica-1",state="lagging"} 1.0' in metrics
        assert 'myservice_read_fallbacks_total{reason="lag"}' in metrics


def test_the_write_read_contract_holds_with_the_token_while_replay_is_paused(
    app_settings, route, secret, paused
):
    with replicated(app_settings, route, secret, **{"myservice.max_replica_lag_ms": "600000"}) as (
        client,
        _,
    ):
        key = f"key-{uuid.uuid4().hex}"
        first = new_user(client, **{"Idempotency-Key": key})
        name = first.json["username"]
        replayed = client.post_json(
            "/users",
            {"username": name, "email": f"{name}@example.com"},
            headers={"Idempotency-Key": key},
        )
        assert replayed.headers["Idempotent-Replayed"] == "true"
        carried = replayed.headers[HEADER]
        user = client.get(replayed.headers["Location"], headers={HEADER: carried})
        patched = client.patch_json(
            user.request.path,
            {"full_name": "Read Your Writes"},
            headers={"If-Match": user.headers["ETag"], HEADER: user.headers[HEADER]},
        )
        group = client.post_json(
            "/groups",
            {"name": f"g{uuid.uuid4().hex[:12]}"},
            headers={HEADER: patched.headers[HEADER]},
        )
        gid, uid = group.json["id"], user.json["id"]
        joined = client.put(f"/groups/{gid}/members/{uid}", status=201)
        members = client.get(f"/groups/{gid}/members", headers={HEADER: joined.headers[HEADER]})
        assert [member["id"] for member in members.json["items"]] == [uid]
        # The same reads without a token are served by the standby, which has none of it.
        client.get(f"/groups/{gid}/members", status=404)
        # The feed, then what it names: the feed's own token carries the read forward.
        feed = client.get("/changes?after=0&limit=1000", headers={HEADER: members.headers[HEADER]})
        (added,) = [c for c in feed.json["items"] if c["resource"] == joined.request.path]
        user_id = added["data"]["user_id"]
        groups = client.get(f"/users/{user_id}/groups", headers={HEADER: feed.headers[HEADER]})
        assert [group["id"] for group in groups.json["items"]] == [gid]


def test_a_stopped_standby_costs_no_request_a_5xx_and_is_used_again_once_restarted(
    app_settings, route, secret, pair
):
    with replicated(app_settings, route, secret) as (client, replicas):
        created = new_user(client)
        location = created.headers["Location"]
        pair.caught_up()
        client.get(location)  # a pooled connection to the standby, which will die
        pair.standby.stop()
        try:
            for _ in range(20):
                assert client.get(location).json["id"] == created.json["id"]
                client.get(location, headers={HEADER: created.headers[HEADER]})
            assert replica_state(client) == "down"
        finally:
            pair.standby.start()
        eventually(lambda: replica_state(client) == "up", "the restarted standby to be up")
        before = reads(replicas)
        for _ in range(3):
            client.get(location)  # a first one may meet a connection of the old server
        assert reads(replicas)["replica-1"] > before["replica-1"]


def test_a_replica_that_stops_answering_mid_read_is_left_and_the_read_served_by_the_primary(
    app_settings, route, secret, pair
):
    """The standby freezes (its proxy stalls) while it is up: the read sent to it is cut by the
    watchdog, the replica marked down, and the read replayed on the primary: a 200, no 5xx."""
    with replicated(app_settings, route, secret) as (client, replicas):
        created = new_user(client)
        location = created.headers["Location"]
        pair.caught_up()
        client.get(location)  # a pooled connection to the standby
        before = reads(replicas)
        route.proxy.stall()
        try:
            assert client.get(location).json["id"] == created.json["id"]
            after = reads(replicas)
            assert after["replica-1"] == before["replica-1"] + 1  # the first attempt
            assert after["primary"] == before["primary"] + 1  # the replay
            assert replica_state(client) == "down"
            metrics = client.get("/metrics").text
            assert 'myservice_request_retries_total{route="user"}' in metrics
        finally:
            route.proxy.restore()
        eventually(lambda: replica_state(client) == "up", "the standby to be up again")


def test_the_feed_read_from_the_standby_is_always_a_prefix_of_commits(
    app_settings, route, secret, pair
):
    """Writers commit concurrently while a reader polls /changes on the standby: every page it
    reads is a dense run of seqs from where it started, never a gap or a reordering."""
    with replicated(app_settings, route, secret, **{"myservice.max_replica_lag_ms": "600000"}) as (
        client,
        replicas,
    ):
        pair.caught_up()
        head = client.get("/changes?after=0&limit=1000").json["items"]
        start = head[-1]["seq"] if head else 0
        writers_done = threading.Event()

        def write(count):
            writer = with_token(client.app, secret)
            for _ in range(count):
                new_user(writer)

        threads = [threading.Thread(target=write, args=(15,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        seen, polls = [], 0
        before = reads(replicas)
        try:
            while not writers_done.is_set() and polls < 2000:
                polls += 1
                items = client.get(f"/changes?after={start}&limit=1000").json["items"]
                seqs = [item["seq"] for item in items]
                assert seqs == list(range(start + 1, start + 1 + len(seqs)))
                seen.append(len(seqs))
                if not any(thread.is_alive() for thread in threads):
                    writers_done.set()
        finally:
            for thread in threads:
                thread.join(DEADLINE)
        pair.caught_up()
        final = client.get(f"/changes?after={start}&limit=1000").json["items"]
        assert [item["seq"] for item in final] == list(range(start + 1, start + 61))
        assert reads(replicas)["replica-1"] - before["replica-1"] >= len(seen)
        assert seen == sorted(seen)  # each poll saw at least what the one before it saw


def test_every_process_of_a_forked_server_watches_the_standby_and_reads_from_it(
    route, secret, paused, tmp_path, monkeypatch
):
    """``pserve production.ini`` with two processes, replicas named by DATABASE_REPLICA_URLS:
    each process's monitor runs after the fork (every /health/ready says up), and every
    process sends an untokened read to the standby (404: replay is paused) and a tokened one
    to a database that has the write (200), on the real server's sockets."""
    monkeypatch.setenv("DATABASE_REPLICA_URLS", route.replica_url)
    overrides = {
        "processes": "2",
        "myservice.max_replica_lag_ms": "600000",
        **{name: value for name, value in route.settings.items()},
    }
    with running_production_server(tmp_path, route.primary_url, overrides, secret) as server:

        def all_up():
            answers = [call(server, "GET", "/health/ready").json() for _ in range(10)]
            return all(answer["replicas"][0]["state"] == "up" for answer in answers)

        eventually(all_up, "every process to see the standby up")
        name = f"f{uuid.uuid4().hex[:12]}"
        created = call(server, "POST", "/users", {"username": name, "email": f"{name}@example.com"})
        assert created.status == 201
        location, written = created.headers["Location"], created.headers[HEADER]
        for _ in range(10):
            assert call(server, "GET", location).status == 404
            fresh = call(server, "GET", location, headers={HEADER: written})
            assert fresh.status == 200
            assert position_of(fresh.headers[HEADER]) >= position_of(written)


def test_a_garbled_token_is_a_400_problem_naming_the_header(app_settings, route, secret):
    with replicated(app_settings, route, secret) as (client, _):
        for garbled in ("nonsense", "1.xyz", "1." + "0" * 17, token(1) + "0"):
            answer = client.get("/users", headers={HEADER: garbled}, status=400)
            assert answer.content_type == "application/problem+json"
            assert answer.json["errors"] == [
                {"header": HEADER, "detail": answer.json["errors"][0]["detail"]}
            ]
        assert client.get("/users", headers={HEADER: token(1)}).status_code == 200
        # A write is served by the primary whatever it sends: the header is not even read.
        assert new_user(client, **{HEADER: "nonsense"}).status_code == 201


def test_without_replicas_no_token_is_sent_and_one_received_is_ignored(testapp):
    answer = testapp.get("/users", headers={HEADER: "garbled"})
    assert HEADER not in answer.headers
    assert "replicas" not in testapp.get("/health/ready").json


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"myservice.replica_urls": "sqlite:///x.db"}, "PostgreSQL"),
        (
            {"myservice.replica_urls": "postgresql://h/d", "myservice.replica_wait_ms": "soon"},
            "replica_wait_ms",
        ),
        (
            {"myservice.replica_urls": "postgresql://h/d", "myservice.max_replica_lag_ms": "-1"},
            "max_replica_lag_ms",
        ),
    ],
)
def test_bad_replica_settings_are_one_line_each(app_settings, is_postgres, settings, message):
    base = {**app_settings}
    if not is_postgres:
        settings = {**settings, "myservice.replica_urls": "postgresql://h/d"}
        message = "SQLite"
    with pytest.raises(BadSettings, match=message):
        myservice.main({}, **{**base, **settings})


def test_positions_compare_as_numbers():
    assert lsn_number("0/3015FC0") < lsn_number("1/0") < lsn_number("A/0")
    assert position_of(token(lsn_number("16/B374D848"))) == lsn_number("16/B374D848")
