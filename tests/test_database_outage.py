"""A real PostgreSQL outage, and the recovery after it, seen by the app in-process.

The app reaches the session's PostgreSQL server through a TCP proxy that the test owns
(``tests/support/tcpproxy.py``). ``cut()`` closes its listening socket and every connection it
forwards, so the database goes away for new connections and for the ones already in the pool
alike (a refused connect, a dead pooled socket); ``restore()`` opens the same port again. No
mocks: the engine, pool, psycopg, pyramid_tm and the exception views all meet a real
disconnect. (A frozen database, and the same through the real server: ``test_faults.py``.)

The contract (API.md, "Operations"): while the database is down every API call gets a fast 503
problem, not a hang and not a 500; when it returns, the service recovers without a restart.

The requests really commit, so the users they create are deleted at the end.
"""

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

import myservice
from myservice.data.models import User
from tests.support.app import with_token
from tests.support.database import short_lived_engine
from tests.support.factories import new_user
from tests.support.outage import answered_within, assert_unavailable, fill_pool
from tests.support.tcpproxy import TcpProxy

#: GET /health/ready when the database answers.
READY = {"status": "ok", "database": "ok", "mode": "read-write"}

#: Seconds any one request may take while the database is down. The engine gives a server 2 s
#: to accept a connection, so this bounds a hang; it is not a timing benchmark.
HANG_BOUND = 10


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def proxy(db_url, postgres_only):
    """A running proxy to the session's PostgreSQL server."""
    url = make_url(db_url)
    with TcpProxy((url.host or "localhost", url.port or 5432)) as proxy:
        yield proxy


@pytest.fixture
def service(app_settings, token, proxy):
    """The app built as ``main()`` builds it, on the database behind the proxy."""
    url = make_url(app_settings["sqlalchemy.url"]).set(host="127.0.0.1", port=proxy.port)
    settings = {**app_settings, "sqlalchemy.url": url.render_as_string(hide_password=False)}
    service = with_token(myservice.main({}, **settings), token)
    yield service
    engine_of(service).dispose()


@pytest.fixture
def created_ids(db_url):
    """Ids of the users a test committed; they are deleted afterwards."""
    ids = []
    yield ids
    if ids:
        with short_lived_engine(db_url) as direct, direct.begin() as connection:
            connection.execute(delete(User).where(User.id.in_(ids)))


def engine_of(service):
    """The engine that ``main()`` built for ``service``."""
    return service.app.registry["dbsession_factory"].kw["bind"]


def create_user(service, created_ids):
    """A new user (committed): its JSON, its id noted for deletion."""
    user = new_user(service)
    created_ids.append(user["id"])
    return user


# -- the outage -------------------------------------------------------------------------------


def test_while_the_database_is_down_every_api_call_is_a_fast_503_and_then_it_recovers(
    service, proxy, created_ids
):
    user = create_user(service, created_ids)
    assert service.get("/health/ready").json == READY
    assert engine_of(service).pool.checkedin() >= 1  # a live connection waits in the pool

    proxy.cut()

    health = answered_within(HANG_BOUND, lambda: service.get("/health"), "GET /health")
    assert health.status_int == 200
    assert health.json == {"status": "ok"}
    new = {"username": "while-down", "email": "while-down@example.org"}
    calls = {  # in this order: the first one meets the dead pooled connection
        "GET /health/ready": lambda: service.get("/health/ready", status="*"),
        "GET /users/<id>": lambda: service.get(f"/users/{user['id']}", status="*"),
        "GET /users": lambda: service.get("/users", status="*"),
        "POST /users": lambda: service.post_json("/users", new, status="*"),
    }
    for call, send in calls.items():
        assert_unavailable(answered_within(HANG_BOUND, send, call), call)

    proxy.restore()

    assert service.get("/health/ready").json == READY
    assert service.get(f"/users/{user['id']}").json == user
    assert engine_of(service).pool.checkedout() == 0


def test_after_a_blip_no_request_is_handed_a_connection_that_died_in_the_pool(
    service, proxy, created_ids
):
    user = create_user(service, created_ids)
    fill_pool(engine_of(service))

    proxy.cut()  # every pooled connection dies, and no request sees the outage
    proxy.restore()

    for _ in range(engine_of(service).pool.size()):  # each pooled connection gets its turn
        assert service.get(f"/users/{user['id']}").json == user
    assert service.get("/users", {"username": user["username"]}).json["items"] == [user]
    assert create_user(service, created_ids)["id"] != user["id"]
    assert engine_of(service).pool.checkedout() == 0
