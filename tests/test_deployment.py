"""The ini files: what production refuses to start without, pools sized to threads, and
production.ini served behind a load balancer."""

import configparser

import pytest
from pyramid.exceptions import ConfigurationError
from pyramid.paster import get_appsettings

import myservice
from tests.support.client import bearer, call
from tests.support.database import new_token
from tests.support.factories import unique
from tests.support.paths import ROOT
from tests.support.servers import PRODUCTION_SECRET, running_production_server


def settings_of(ini):
    return dict(get_appsettings(str(ROOT / ini), name="main"))


def test_production_refuses_to_start_without_a_database_url(monkeypatch):
    monkeypatch.setenv("MYSERVICE_SECRET", PRODUCTION_SECRET)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        myservice.main({}, **settings_of("production.ini"))


def test_production_refuses_to_start_without_a_secret(monkeypatch, db_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    with pytest.raises(ConfigurationError, match="MYSERVICE_SECRET"):
        myservice.main({}, **settings_of("production.ini"))


def test_production_starts_with_both_from_the_environment(monkeypatch, db_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MYSERVICE_SECRET", PRODUCTION_SECRET)
    app = myservice.main({}, **settings_of("production.ini"))
    engine = app.registry["dbsession_factory"].kw["bind"]
    assert engine.url.render_as_string(hide_password=False) == db_url
    engine.dispose()


def test_a_postgres_url_from_the_environment_uses_psycopg_3(monkeypatch):
    from myservice.data.engine import database_url

    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/app")
    assert database_url({}).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_every_waitress_thread_can_have_a_connection(ini):
    parser = configparser.ConfigParser()
    parser.read(ROOT / ini)
    settings = settings_of(ini)
    threads = int(parser.get("server:main", "threads"))
    connections = int(settings["sqlalchemy.pool_size"]) + int(settings["sqlalchemy.max_overflow"])
    assert connections >= threads


def test_production_serves_on_all_interfaces_without_debugging():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "production.ini")
    assert parser.get("server:main", "listen").startswith("0.0.0.0:")
    settings = settings_of("production.ini")
    assert not any(
        value.strip().lower() == "true" for key, value in settings.items() if "debug" in key
    )
    assert "pyramid.includes" not in settings  # no debugtoolbar or the like


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_pool_pre_ping_is_read_as_a_boolean(value, expected):
    from myservice.data.engine import make_engine

    engine = make_engine({"sqlalchemy.url": "sqlite://", "sqlalchemy.pool_pre_ping": value})
    assert engine.pool._pre_ping is expected


def test_postgresql_sessions_run_in_utc_and_keep_the_options_the_url_names(db_url, postgres_only):
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from myservice.data.engine import make_engine

    url = make_url(db_url).update_query_dict({"options": "-c application_name=from-the-url"})
    engine = make_engine({"sqlalchemy.url": url.render_as_string(hide_password=False)})
    try:
        with engine.connect() as connection:
            zone = connection.execute(text("SHOW TimeZone")).scalar()
            name = connection.execute(text("SHOW application_name")).scalar()
    finally:
        engine.dispose()
    assert (zone, name) == ("UTC", "from-the-url")


# -- production.ini served, behind a load balancer ----------------------------------------------

FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "api.example.com",
    "X-Forwarded-Port": "443",
}


def created_location(server):
    name = unique("proxied")
    body = {"username": name, "email": f"{name}@example.org"}
    reply = call(server, "POST", "/users", body, headers=FORWARDED)
    assert reply.status == 201, reply.body
    return reply.headers["Location"], reply.json()["id"]


def test_production_believes_the_forwarded_scheme_and_host_of_its_proxy(
    db_url, token, tmp_path, empty_tables
):
    with running_production_server(tmp_path, db_url, token=token) as server:  # from 127.0.0.1
        location, user_id = created_location(server)

    assert location == f"https://api.example.com/users/{user_id}"


def test_production_ignores_forwarded_headers_from_anyone_but_its_proxy(
    db_url, token, tmp_path, empty_tables
):
    elsewhere = {"trusted_proxy": "192.0.2.1"}  # the tests' client is not the proxy
    with running_production_server(tmp_path, db_url, elsewhere, token) as server:
        location, user_id = created_location(server)

    assert location == f"{server.base_url}/users/{user_id}"


def test_production_serves_metrics_only_to_a_token_with_the_metrics_scope_even_from_localhost(
    db_url, token, tmp_path
):
    """Behind a proxy on the same host every client comes from 127.0.0.1: "localhost" access
    would serve the metrics to anyone the proxy lets in. production.ini asks for a token."""
    scraper = new_token(db_url, unique("scraper"), ["metrics"])
    with running_production_server(tmp_path, db_url, token=token) as server:  # from 127.0.0.1
        anonymous = call(server, "GET", "/metrics", headers={"Authorization": None})
        reader = call(server, "GET", "/metrics")  # read and write, not metrics
        scraped = call(server, "GET", "/metrics", headers=bearer(scraper))

    assert anonymous.status == 401, anonymous.body
    assert reader.status == 403, reader.body
    assert scraped.status == 200, scraped.body
    assert b"myservice_requests_total" in scraped.body
