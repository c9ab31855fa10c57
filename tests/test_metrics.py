"""GET /metrics: the counters move with real requests, and only the right clients may read them.

Each test reads the metrics before and after what it does and checks the difference, parsed
with prometheus_client's own parser. In process the client's address is the WSGI
``REMOTE_ADDR`` (waitress sets it from the socket, or from X-Forwarded-For with
``trusted_proxy``); the multi-process test runs two real servers that share one
``PROMETHEUS_MULTIPROC_DIR``.
"""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families
from pyramid.exceptions import ConfigurationError
from sqlalchemy import insert

import myservice
from myservice.data.models import User
from tests.support.app import with_token
from tests.support.client import bearer, call
from tests.support.database import new_token, short_lived_engine
from tests.support.factories import unique
from tests.support.problems import assert_problem
from tests.support.servers import UNKNOWN_TOKEN, running_server

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REQUESTS = "myservice_requests_total"
LATENCY = "myservice_request_duration_seconds"
RETRIES = "myservice_request_retries_total"
ABORTS = "myservice_transaction_aborts_total"
DATABASE_ERRORS = "myservice_database_errors_total"
CHECKED_OUT = "myservice_db_connections_checked_out"

#: Seconds a test waits for a server-side state it polls /metrics for.
DEADLINE = 10


class Scrape:
    """The samples of one scrape: ``scrape[name, labels...]`` is a value, 0 when absent."""

    def __init__(self, text):
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self):
        return {name for name, _ in self.samples}


def scrape(client, **environ):
    reply = client.get("/metrics", extra_environ={**LOCAL, **environ})
    assert reply.content_type == "text/plain"
    return Scrape(reply.text)


# -- requests, retries, aborts, database errors --------------------------------------------


def test_the_request_count_and_latency_of_a_route_rise_with_each_request(testapp):
    by_route = {"route": "users", "method": "GET", "status": "200"}
    before = scrape(testapp)

    for _ in range(3):
        testapp.get("/users?limit=1")

    after = scrape(testapp)
    assert after(REQUESTS, **by_route) - before(REQUESTS, **by_route) == 3
    assert after(f"{LATENCY}_count", **by_route) - before(f"{LATENCY}_count", **by_route) == 3
    assert after(f"{LATENCY}_sum", **by_route) > before(f"{LATENCY}_sum", **by_route)
    assert after(ABORTS, route="users") == before(ABORTS, route="users")


def test_an_error_response_is_counted_by_its_status_and_as_an_aborted_transaction(testapp):
    before = scrape(testapp)

    testapp.get("/users/999999999", status=404)
    testapp.get("/nowhere", status=404)

    after = scrape(testapp)
    for route in ("user", "unmatched"):
        by_route = {"route": route, "method": "GET", "status": "404"}
        assert after(REQUESTS, **by_route) - before(REQUESTS, **by_route) == 1
        assert after(ABORTS, route=route) - before(ABORTS, route=route) == 1
    assert after(RETRIES, route="user") == before(RETRIES, route="user")


@pytest.mark.parametrize(
    ("route", "status", "retries", "aborted_attempts"),
    [("/test/conflict-once", 200, 1, 1), ("/test/conflict-always", 503, 2, 3)],
    ids=["replayed-then-served", "conflicted-on-every-attempt"],
)
def test_a_replayed_request_counts_once_and_each_attempt_counts_its_abort_and_conflict(
    views_client,
    route,
    status,
    retries,
    aborted_attempts,
):
    by_route = {"route": route, "method": "GET", "status": str(status)}
    before = scrape(views_client)

    for _ in range(2):  # the first of its kind, then one counted as a known kind
        views_client.get(route, status=status)

    after = scrape(views_client)
    assert after(REQUESTS, **by_route) - before(REQUESTS, **by_route) == 2
    assert after(RETRIES, route=route) - before(RETRIES, route=route) == 2 * retries
    assert after(ABORTS, route=route) - before(ABORTS, route=route) == 2 * aborted_attempts
    conflicts = after(DATABASE_ERRORS, kind="conflict") - before(DATABASE_ERRORS, kind="conflict")
    assert conflicts == 2 * aborted_attempts


def test_a_database_that_cannot_be_reached_counts_as_unavailable(app_settings):
    """(Its token's look-up is the first statement to fail.)"""
    with socket.socket() as probe:  # a port nothing listens on: the connect is refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed}/nothing"
    client = with_token(
        myservice.main({}, **{**app_settings, "sqlalchemy.url": url}), UNKNOWN_TOKEN
    )
    before = scrape(client)

    assert_problem(client.get("/users", status=503), 503)

    after = scrape(client)
    unavailable = after(DATABASE_ERRORS, kind="unavailable")
    assert unavailable - before(DATABASE_ERRORS, kind="unavailable") == 1
    assert after(ABORTS, route="users") - before(ABORTS, route="users") == 1


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # WebTest's lint
def test_an_unknown_method_is_counted_as_other(testapp):
    by_route = {"route": "users", "method": "other", "status": "405"}
    before = scrape(testapp)

    testapp.request("/users", method="BREW", status=405)

    assert scrape(testapp)(REQUESTS, **by_route) - before(REQUESTS, **by_route) == 1


# -- the pool ------------------------------------------------------------------------------


def test_the_checked_out_gauge_follows_the_pool(app, testapp):
    engine = app.registry["dbsession_factory"].kw["bind"].engine  # bound to the test's connection
    # The testapp fixture holds one connection (the test's outer transaction), and only that.
    assert scrape(testapp)(CHECKED_OUT) == 1

    with engine.connect():
        assert scrape(testapp)(CHECKED_OUT) == 2

    assert scrape(testapp)(CHECKED_OUT) == 1


# -- who may read them ---------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_a_loopback_client_reads_the_metrics(testapp, address):
    assert REQUESTS in scrape(testapp, REMOTE_ADDR=address).names()


@pytest.mark.parametrize("environ", [{"REMOTE_ADDR": "192.0.2.7"}, {"REMOTE_ADDR": "::2"}, {}])
def test_any_other_client_gets_403_in_localhost_mode(testapp, environ):
    reply = testapp.get("/metrics", extra_environ=environ, status=403)

    problem = assert_problem(reply, 403)
    assert "myservice.metrics_access" in problem["detail"]


def test_in_token_mode_a_token_with_the_metrics_scope_decides_whatever_the_address(
    app_settings, db_url
):
    app = myservice.main({}, **{**app_settings, "myservice.metrics_access": "token"})
    client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    scraper = new_token(db_url, unique("scraper"), ["metrics"])
    reader = new_token(db_url, unique("reader"), ["read"])

    assert_problem(client.get("/metrics", status=401), 401)
    assert_problem(client.get("/metrics", headers=bearer(reader), status=403), 403)
    reply = client.get("/metrics", headers=bearer(scraper))
    assert REQUESTS in Scrape(reply.text).names()


def test_an_unknown_access_mode_stops_the_app_from_starting(app_settings):
    with pytest.raises(ConfigurationError, match=r"myservice\.metrics_access must be one of"):
        myservice.main({}, **{**app_settings, "myservice.metrics_access": "everyone"})


# -- several processes ---------------------------------------------------------------------


def scrape_server(server):
    reply = call(server, "GET", "/metrics")
    assert reply.status == 200, reply.body
    return Scrape(reply.body.decode())


def wait_for(server, condition):
    """Scrapes ``server`` until ``condition(scrape)`` holds, for at most DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition(scrape_server(server)):
            return
        threading.Event().wait(0.02)
    pytest.fail(f"the metrics never showed what was waited for within {DEADLINE}s")


def test_two_processes_sharing_a_multiprocess_dir_report_one_sum(
    db_url, token, tmp_path, monkeypatch, empty_tables
):
    """Requests to either server are counted in a scrape of either; a connection held by one
    shows in the other's gauge, and leaves it when returned."""
    (tmp_path / "metrics").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a", db_url, token=token) as first,
        running_server(tmp_path / "b", db_url, token=token) as second,
    ):
        for server, times in ((first, 3), (second, 2)):
            for _ in range(times):
                assert call(server, "GET", "/openapi.json").status == 200
        by_route = {"route": "openapi", "method": "GET", "status": "200"}
        assert scrape_server(first)(REQUESTS, **by_route) == 5
        assert scrape_server(second)(REQUESTS, **by_route) == 5

        # A POST to the second server waits for a user that this test inserts and holds
        # uncommitted (PostgreSQL: on the unique index; SQLite: for the write lock).
        username = unique("held")
        with short_lived_engine(db_url) as engine, engine.connect() as holder:
            holding = holder.begin()
            held = {"username": username, "email": f"{username}@e.org", "version": 1}
            holder.execute(insert(User).values(**held))
            with ThreadPoolExecutor(max_workers=1) as pool:
                body = {"username": username, "email": f"{username}@example.org"}
                waiting = pool.submit(call, second, "POST", "/users", body)
                wait_for(first, lambda metrics: metrics(CHECKED_OUT) == 1)
                holding.rollback()
                assert waiting.result(timeout=DEADLINE).status == 201
        wait_for(first, lambda metrics: metrics(CHECKED_OUT) == 0)
