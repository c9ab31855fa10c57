"""What bounds a request's wait for PostgreSQL (``myservice.data.timeouts``), on a live server.

A write's transaction runs under ``SET LOCAL`` statement, lock and idle timeouts that end with
it; the server cancels a write's statement or lock wait; the client cuts a statement the server
has not answered in time (here a read, which the server does not bound); a request that finds
the pool empty gets a 503 after ``pool_timeout``. Each refusal is a 503 problem with
``Retry-After``, within ``BOUND``, and the service carries on. (A frozen or unreachable server:
``test_faults.py``.)

PostgreSQL only: SQLite has none of these timeouts (its writers wait ``busy_timeout``).
"""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import select, text

from myservice.data.models import User
from myservice.data.timeouts import RECONNECT_PAUSE, SETTINGS
from tests.support.app import app_with_views, with_token
from tests.support.client import call
from tests.support.database import new_token, short_lived_engine
from tests.support.factories import unique
from tests.support.locks import LockWait
from tests.support.outage import answered_within, assert_unavailable, fill_pool
from tests.support.servers import running_server

#: Seconds any answer may take here: the timeouts are 1 s at most (the watchdog 1.5 s), the
#: pool's 1 s; generous for a loaded machine, and far below "waits until the lock is released".
BOUND = 4

#: The request timeouts, by PostgreSQL parameter.
PARAMETERS = [parameter for parameter, _ in SETTINGS.values()]


pytestmark = pytest.mark.usefixtures("postgres_only")


def show_timeouts(request):
    return {name: request.dbsession.execute(text(f"SHOW {name}")).scalar() for name in PARAMETERS}


def sleep(request):
    request.dbsession.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": 10})
    return {}


def lock_user(request):
    user = select(User.id).where(User.id == int(request.params["id"])).with_for_update()
    request.dbsession.execute(user)
    return {}


TEST_VIEWS = {"/test/timeouts": show_timeouts, "/test/sleep": sleep, "/test/lock-user": lock_user}


@contextmanager
def service(app_settings, **settings):
    """The service as ``main()`` builds it on its own engine, plus the test views."""
    app = app_with_views({**app_settings, **settings}, TEST_VIEWS)
    token = new_token(app_settings["sqlalchemy.url"], unique("timeouts"), ["read", "write"])
    try:
        yield with_token(app, token)
    finally:
        app.registry["dbsession_factory"].kw["bind"].dispose()


@contextmanager
def row_locked(db_url, user_id):
    """A transaction of the test's own that holds the user's row lock until the block ends:
    its connection."""
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        connection.execute(select(User.id).where(User.id == user_id).with_for_update())
        yield connection


@pytest.fixture
def user(db_url, empty_tables):
    """A committed user, for a lock to be taken on."""
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        name = unique("timeout")
        return connection.execute(
            User.__table__.insert()
            .values(username=name, email=f"{name}@example.org", full_name="", version=1)
            .returning(User.__table__.c.id)
        ).scalar_one()


def server_defaults(db_url):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return {name: connection.exec_driver_sql(f"SHOW {name}").scalar() for name in PARAMETERS}


def test_a_write_runs_under_the_request_timeouts_and_they_end_with_its_transaction(
    app_settings, db_url
):
    settings = {
        "myservice.statement_timeout_ms": "1234",
        "myservice.lock_timeout_ms": "0",  # 0: not set, the server's default applies
        "myservice.idle_in_transaction_timeout_ms": "4321",
        "sqlalchemy.pool_size": "1",  # every request below runs on the same connection
    }
    defaults = server_defaults(db_url)
    with service(app_settings, **settings) as client:
        assert client.post("/test/timeouts").json == {
            "statement_timeout": "1234ms",
            "lock_timeout": defaults["lock_timeout"],
            "idle_in_transaction_session_timeout": "4321ms",
        }
        # Nothing sticks to the connection (nor, behind PgBouncer, to the server's): a read
        # on it runs with the server's defaults.
        assert client.get("/test/timeouts").json == defaults


def assert_too_slow(client, method, path, log_lines, logged):
    """``method path`` is a 503 "did not answer in time" within ``BOUND``; the server log
    says ``logged`` (which bound ended the wait); nothing was replayed (it would wait again)."""
    what = f"{method} {path}"
    reply = answered_within(BOUND, lambda: client.request(path, method=method, status="*"), what)
    assert assert_unavailable(reply, what)["detail"] == "the database did not answer in time"
    lines = log_lines()
    assert any(logged in line for line in lines), lines
    assert not any("replaying" in line for line in lines)


def test_a_write_statement_the_server_runs_too_long_is_cancelled_at_statement_timeout(
    app_settings, log_lines
):
    with service(app_settings) as client:
        logged = "canceling statement due to statement timeout"
        assert_too_slow(client, "POST", "/test/sleep", log_lines, logged)


def test_a_write_waiting_for_a_row_lock_is_cancelled_at_lock_timeout(
    app_settings, db_url, user, log_lines
):
    with service(app_settings) as client:
        with row_locked(db_url, user):
            logged = "canceling statement due to lock timeout"
            assert_too_slow(client, "POST", f"/test/lock-user?id={user}", log_lines, logged)
        assert client.post(f"/test/lock-user?id={user}").status_int == 200  # the lock is free


def test_a_statement_the_server_does_not_answer_in_time_is_cut_by_the_client(
    app_settings, log_lines
):
    with service(app_settings) as client:
        engine = client.app.registry["dbsession_factory"].kw["bind"]
        fill_pool(engine)
        # A read: no server-side timeout, so only the client's watchdog ends the wait.
        assert_too_slow(client, "GET", "/test/sleep", log_lines, "connection cut")
        # Only the cut connection was discarded: the others serve the next requests at once
        # (new connections wait for RECONNECT_PAUSE: a server that does not answer a
        # statement is not asked for a connection at once).
        for _ in range(engine.pool.size() - 1):
            assert client.get("/users").status_int == 200
        deadline = time.monotonic() + RECONNECT_PAUSE + BOUND
        while client.get("/users", status="*").status_int != 200:
            assert time.monotonic() < deadline, "no new connection after the pause"
            time.sleep(0.05)
        assert engine.pool.checkedout() == 0


def test_a_request_that_finds_the_pool_empty_gets_a_fast_503(db_url, user, tmp_path):
    overrides = {
        "sqlalchemy.pool_size": "1",  # and 4 threads
        "myservice.lock_timeout_ms": "0",
        "myservice.statement_timeout_ms": "20000",  # the lock wait holds the one connection
    }
    token = new_token(db_url, unique("timeouts"), ["read", "write"])
    with running_server(tmp_path, db_url, overrides, token) as server:
        with ThreadPoolExecutor(max_workers=1) as pool:
            with row_locked(db_url, user) as holder:
                waited = {"full_name": "waited"}
                patch = pool.submit(call, server, "PATCH", f"/users/{user}", waited)
                LockWait(holder).wait_until_waiting(patch, BOUND)

                reply = answered_within(
                    BOUND, lambda: call(server, "GET", f"/users/{user}"), "GET with the pool empty"
                )
                problem = assert_unavailable(reply, "GET with the pool empty")
                assert problem["detail"] == "the database is unavailable"
            patched = patch.result(timeout=BOUND)  # it finishes once the lock is released
        assert patched.status == 200, patched.body
        assert call(server, "GET", f"/users/{user}").json()["full_name"] == "waited"


def test_ready_gives_the_database_one_second_whatever_the_statement_timeout(app_settings, db_url):
    with (
        service(app_settings, **{"myservice.statement_timeout_ms": "20000"}) as client,
        short_lived_engine(db_url) as engine,
        engine.begin() as connection,
    ):
        # The row /health/ready reads cannot be read until this transaction ends.
        connection.execute(text("LOCK TABLE service_mode IN ACCESS EXCLUSIVE MODE"))
        reply = answered_within(
            BOUND, lambda: client.get("/health/ready", status="*"), "GET /health/ready"
        )
        assert assert_unavailable(reply, "ready")["detail"] == "the database is unavailable"
