"""A real PostgreSQL outage, and the recovery after it, seen by the app in-process.

The app reaches the session's PostgreSQL server through a TCP forwarder that the test owns.
``stop()`` closes the forwarder's listening socket and every connection it forwards, so the
database goes away for new connections and for the ones already in the pool alike (a refused
connect, a dead pooled socket); ``start()`` opens the same port again. No mocks: the engine,
pool, psycopg, pyramid_tm and the exception views all meet a real disconnect.

The contract (API.md, "Operations"): while the database is down every API call gets a fast 503
problem, not a hang and not a 500; when it returns, the service recovers without a restart.

The requests really commit, so the users they create are deleted at the end.
"""

import select
import socket
import threading
import time
import uuid
from contextlib import ExitStack

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

import myservice
from myservice.models import User
from tests.conftest import short_lived_engine, with_token

#: Seconds any one request may take while the database is down. The engine gives a server 3 s
#: to accept a connection, so this bounds a hang; it is not a timing benchmark.
HANG_BOUND = 10

#: Seconds the forwarder's threads sleep between looks at their stop flag.
POLL = 0.05

#: What a problem document must never show the client.
INTERNALS = ("psycopg", "OperationalError", "SQL")


# -- the forwarder ----------------------------------------------------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Forwarder:
    """Forwards 127.0.0.1:``port`` to ``target``, one thread per connection, until ``stop()``.

    Each thread owns its sockets and closes them itself once the stop flag is up, so ``stop()``
    returns only when the port is closed and every forwarded connection is gone.
    """

    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.stopping = threading.Event()
        self.threads = []

    def start(self):
        assert not self.threads, "the forwarder is already running"
        self.stopping.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(POLL)
        self.spawn(self.accept, listener)

    def stop(self):
        self.stopping.set()
        while self.threads:
            thread = self.threads.pop()
            thread.join(timeout=5)
            assert not thread.is_alive(), "a forwarder thread did not stop"

    def spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def accept(self, listener):
        with listener:
            while not self.stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                client.settimeout(5)  # bounds a sendall to a client that stopped reading
                self.spawn(self.pump, client, upstream)

    def pump(self, client, upstream):
        """Copy bytes both ways until either side hangs up or the forwarder stops."""
        peers = {client: upstream, upstream: client}
        with client, upstream:
            while not self.stopping.is_set():
                readable, _, _ = select.select(list(peers), [], [], POLL)
                for source in readable:
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        peers[source].sendall(data)
                    except OSError:
                        return


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def forwarder(db_url, is_postgres):
    """A running forwarder to the session's PostgreSQL server."""
    if not is_postgres:
        pytest.skip("a database outage needs PostgreSQL: set TEST_DATABASE_URL to run it")
    url = make_url(db_url)
    forwarder = Forwarder((url.host or "localhost", url.port or 5432))
    forwarder.start()
    yield forwarder
    forwarder.stop()


@pytest.fixture
def service(app_settings, token, forwarder):
    """The app built as ``main()`` builds it, on the database behind the forwarder."""
    url = make_url(app_settings["sqlalchemy.url"]).set(host="127.0.0.1", port=forwarder.port)
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


def answered_in_time(send):
    """The response of ``send()``; the test fails if it takes ``HANG_BOUND`` seconds or more.

    The request runs in a daemon thread, so a request that hangs fails the test instead of
    hanging it.
    """
    outcome = {}

    def run():
        try:
            outcome["response"] = send()
        except BaseException as error:
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_BOUND)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"no answer after {HANG_BOUND} s: the request hangs"
    if "error" in outcome:
        raise outcome["error"]
    assert elapsed < HANG_BOUND, f"the answer took {elapsed:.1f} s"
    return outcome["response"]


def assert_unavailable(response, call):
    """A 503 problem document with ``Retry-After`` that shows the client nothing internal."""
    assert response.status_int == 503, f"{call}: {response.status} {response.text}"
    assert response.content_type == "application/problem+json", call
    assert int(response.headers["Retry-After"]) > 0, call
    problem = response.json
    assert problem["status"] == 503, call
    assert problem["type"] and problem["title"], call
    for internal in INTERNALS:
        assert internal not in response.text, f"{call} shows {internal!r}: {response.text}"


def fill_pool(engine):
    """Open as many connections as the pool keeps, all at once, and return them to it."""
    with ExitStack() as stack:
        for _ in range(engine.pool.size()):
            stack.enter_context(engine.connect())
    assert engine.pool.checkedin() == engine.pool.size()


def create_user(service, created_ids):
    username = f"outage-{uuid.uuid4().hex[:12]}"
    body = {"username": username, "email": f"{username}@example.org"}
    response = service.post_json("/users", body)
    assert response.status_int == 201
    created_ids.append(response.json["id"])
    return response.json


# -- the outage -------------------------------------------------------------------------------


def test_while_the_database_is_down_every_api_call_is_a_fast_503_and_then_it_recovers(
    service, forwarder, created_ids
):
    user = create_user(service, created_ids)
    assert service.get("/health/ready").json == {"status": "ok", "database": "ok"}
    assert engine_of(service).pool.checkedin() >= 1  # a live connection waits in the pool

    forwarder.stop()

    health = answered_in_time(lambda: service.get("/health"))
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
        assert_unavailable(answered_in_time(send), call)

    forwarder.start()

    assert service.get("/health/ready").json == {"status": "ok", "database": "ok"}
    assert service.get(f"/users/{user['id']}").json == user
    assert engine_of(service).pool.checkedout() == 0


def test_after_a_blip_no_request_is_handed_a_connection_that_died_in_the_pool(
    service, forwarder, created_ids
):
    user = create_user(service, created_ids)
    fill_pool(engine_of(service))

    forwarder.stop()  # every pooled connection dies, and no request sees the outage
    forwarder.start()

    for _ in range(engine_of(service).pool.size()):  # each pooled connection gets its turn
        assert service.get(f"/users/{user['id']}").json == user
    assert service.get("/users", {"username": user["username"]}).json["items"] == [user]
    assert create_user(service, created_ids)["id"] != user["id"]
    assert engine_of(service).pool.checkedout() == 0
