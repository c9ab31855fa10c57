"""The real server (``pserve``, real sockets) while its PostgreSQL server is cut off, frozen and
restored, through a TCP proxy the test controls (``tests/support/tcpproxy.py``).

- **cut**: the port refuses connections and the pooled ones are reset, as when PostgreSQL dies;
- **stall**: connections are accepted and nothing moves, as when PostgreSQL (or the network)
  freezes: the kernel still acknowledges, so only the service's own bounds end the wait;
- **restore**: forwarding again, without restarting the service.

The contract: while the database is away every API call is a 503 problem with ``Retry-After``
within ``BOUND`` seconds (never a hang, never a 500); after restore the next calls succeed; and
no acknowledged write is lost: every 201 is in the database afterwards.

PostgreSQL only (CI runs it): SQLite is a file, with no connection to cut.
"""

import threading
import time

import pytest
from pyramid.paster import get_appsettings
from sqlalchemy import select
from sqlalchemy.engine import make_url

from myservice.data.models import User
from myservice.data.timeouts import GRACE, POSTGRES_CONNECT_ARGS, RECONNECT_PAUSE, TICK, timeouts_ms
from tests.support.client import call, concurrently
from tests.support.database import delete_all_rows, new_token, short_lived_engine
from tests.support.factories import unique, user_body
from tests.support.outage import answered_within, assert_unavailable
from tests.support.paths import DEVELOPMENT_INI
from tests.support.servers import running_server
from tests.support.tcpproxy import TcpProxy

#: The longest the service lets one call wait for a database that is away (2 s): an attempt to
#: connect (psycopg's connect_timeout), or a statement the server does not answer, cut by the
#: watchdog (statement_timeout + GRACE, checked every TICK: 1.6 s). Never both in one call:
#: after either, the connect gate refuses at once.
LONGEST_WAIT = max(
    POSTGRES_CONNECT_ARGS["connect_timeout"],
    timeouts_ms(get_appsettings(str(DEVELOPMENT_INI)))["statement_timeout"] / 1000 + GRACE + TICK,
)

#: Seconds any one answer may take while the database is away: three times the longest wait,
#: 6 s. What it proves: no call hangs (a hang ends only when the client gives up, after
#: CLIENT_TIMEOUT, 10 s), and no call waits its turn behind others' attempts to connect (without
#: the connect gate, the 20 calls of the test under load would queue on 4 threads, one round of
#: 2 s attempts after another, up to 10 s). The 4 s above the longest wait are the margin a busy
#: 2-core machine needs; this is not a benchmark.
BOUND = 3 * LONGEST_WAIT

#: Seconds a phase of the churn test may take to see its requests through.
PHASE_DEADLINE = 20


@pytest.fixture(scope="module")
def proxy(db_url, postgres_only):
    """A running proxy to the session's PostgreSQL server (SQLite is a file: nothing to cut)."""
    url = make_url(db_url)
    with TcpProxy((url.host or "localhost", url.port or 5432)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def server(db_url, proxy, tmp_path_factory):
    """The real service on the session's database, reached through ``proxy``."""
    proxied = make_url(db_url).set(host="127.0.0.1", port=proxy.port)
    url = proxied.render_as_string(hide_password=False)
    try:
        token = new_token(db_url, unique("faults"), ["read", "write"])
        with running_server(tmp_path_factory.mktemp("faults"), url, token=token) as running:
            yield running
    finally:
        delete_all_rows(db_url)


@pytest.fixture(autouse=True)
def restored(proxy):
    """Every test starts and ends with the database in reach."""
    proxy.restore()
    yield
    proxy.restore()


def timed(server, method, path, body=None):
    """One call, which must be answered within ``BOUND``."""
    what = f"{method} {path}"
    return answered_within(BOUND, lambda: call(server, method, path, body), what)


def api_calls(user_id):
    """One of each kind of API call: (method, path, body)."""
    return [
        ("GET", "/health/ready", None),
        ("GET", f"/users/{user_id}", None),
        ("GET", "/users", None),
        ("GET", "/changes", None),
        ("POST", "/users", user_body()),
        ("PATCH", f"/users/{user_id}", {"full_name": "never"}),
        ("POST", "/groups", {"name": unique("group")}),
    ]


def assert_every_call_is_a_fast_503(server, user_id):
    for method, path, body in api_calls(user_id):
        assert_unavailable(timed(server, method, path, body), f"{method} {path}")
    health = timed(server, "GET", "/health")  # touches no database
    assert health.status == 200


def assert_served(server, user, within=0):
    """Served again: /health/ready at once, or polled for ``within`` seconds (bounded)."""
    deadline = time.monotonic() + within
    while (ready := timed(server, "GET", "/health/ready")).status != 200:
        assert time.monotonic() < deadline, f"not ready again within {within} s: {ready.body}"
        time.sleep(0.05)
    assert timed(server, "GET", f"/users/{user['id']}").json() == user
    created = timed(server, "POST", "/users", user_body())
    assert created.status == 201, created.body


def a_served_user(server):
    created = timed(server, "POST", "/users", user_body())
    assert created.status == 201, created.body
    user = created.json()
    assert timed(server, "GET", f"/users/{user['id']}").json() == user  # a pooled connection
    return user


def test_cut_off_every_call_is_a_fast_503_and_the_first_call_after_restore_succeeds(server, proxy):
    user = a_served_user(server)

    proxy.cut()
    assert_every_call_is_a_fast_503(server, user["id"])

    proxy.restore()
    assert_served(server, user)


def test_frozen_every_call_is_a_fast_503_and_the_first_call_after_restore_succeeds(server, proxy):
    user = a_served_user(server)
    log_start = len(server.log_lines())

    proxy.stall()
    assert_every_call_is_a_fast_503(server, user["id"])
    # The first call met a pooled connection: the client's watchdog cut it (the server, frozen,
    # could not cancel anything); the later ones could not connect.
    log = server.log_lines()[log_start:]
    assert any("connection cut" in line for line in log), "\n".join(log)

    proxy.restore()
    # The last attempts to connect timed out: the next one is made RECONNECT_PAUSE later.
    assert_served(server, user, within=RECONNECT_PAUSE + 2)


def test_frozen_under_load_every_answer_is_still_a_fast_503(server, proxy):
    """More requests than the server has threads: without the connect gate each would wait
    for its own connect timeout, one batch of threads after another."""
    user = a_served_user(server)

    proxy.stall()
    paths = [f"/users/{user['id']}", "/users", "/changes", "/health/ready"] * 5
    replies = concurrently(lambda path: timed(server, "GET", path), paths)
    for path, reply in zip(paths, replies, strict=True):
        assert_unavailable(reply, f"GET {path} under load")

    proxy.restore()
    assert_served(server, user, within=RECONNECT_PAUSE + 2)


def test_no_acknowledged_write_is_lost_while_the_database_is_cut_frozen_and_restored(
    server, proxy, db_url
):
    """Writers and a reader keep calling while the database goes away and comes back, twice
    each way. Every answer is a 2xx or a fast 503; every 201 is in the database afterwards."""
    answers = []  # (phase, kind, status, the created user or None)
    errors = []
    lock = threading.Lock()
    stop = threading.Event()
    phase = ["up0"]

    def client(kind):
        try:
            for _ in range(2000):  # bounded; the test stops it long before
                if stop.is_set():
                    return
                if kind == "writer":
                    reply = timed(server, "POST", "/users", user_body())
                else:
                    reply = timed(server, "GET", "/users?limit=5")
                if reply.status == 503:
                    assert_unavailable(reply, f"{kind} in phase {phase[0]}")
                else:
                    assert reply.status in (200, 201), f"{kind}: {reply.status} {reply.body}"
                created = reply.json() if reply.status == 201 else None
                with lock:
                    answers.append((phase[0], kind, reply.status, created))
        except BaseException as error:
            errors.append(error)

    def until(what, name, status):
        """Wait (bounded) until phase ``name`` has had 3 answers with ``status``."""
        deadline = time.monotonic() + PHASE_DEADLINE
        while True:
            if errors:
                raise errors[0]
            with lock:
                seen = sum(1 for p, _, s, _ in answers if p == name and s == status)
            if seen >= 3:
                return
            assert time.monotonic() < deadline, f"no 3 {what} within {PHASE_DEADLINE} s"
            time.sleep(0.02)

    threads = [
        threading.Thread(target=client, args=(kind,), daemon=True)
        for kind in ("writer", "writer", "reader")
    ]
    for thread in threads:
        thread.start()
    try:
        for number, fault in enumerate((proxy.cut, proxy.stall, proxy.cut, proxy.stall)):
            until("writes while up", f"up{number}", 201)
            phase[0] = f"down{number}"
            fault()
            until("503s while down", f"down{number}", 503)
            phase[0] = f"up{number + 1}"
            proxy.restore()
        until("writes after the last restore", "up4", 201)
    finally:
        stop.set()
        for thread in threads:
            thread.join(BOUND * 2)
    assert not any(thread.is_alive() for thread in threads), "a client did not stop"
    if errors:
        raise errors[0]

    acknowledged = {user["username"]: user["id"] for _, _, status, user in answers if user}
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        stored = dict(
            connection.execute(
                select(User.username, User.id).where(User.username.in_(acknowledged))
            ).all()
        )
    assert stored == acknowledged, f"acknowledged but lost: {set(acknowledged) - set(stored)}"
    statuses = {status for _, _, status, _ in answers}
    assert statuses <= {200, 201, 503}, statuses
