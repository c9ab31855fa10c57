"""Maintenance mode: ``myservice-maintenance INI on|off|status`` against the running server, and
``myservice.read_only`` in the ini file. While on, every write is a 503 problem with
``Retry-After`` and leaves nothing behind; reads are served; ``/health/ready`` says so.

Both databases: the switch is a row, the console script is run as an operator runs it.
"""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pyramid.paster import get_appsettings
from sqlalchemy import func, select

import myservice
from myservice.data.models import Change, Group, IdempotencyKey, Membership, User
from myservice.data.models.maintenance import switch_mode
from myservice.data.models.meta import utcnow
from myservice.data.models.token import TOKENS
from myservice.data.scripts import session_scope
from tests.support.app import with_token
from tests.support.client import call
from tests.support.database import add_keys, new_token, short_lived_engine, stored_keys
from tests.support.factories import unique, user_body
from tests.support.paths import DEVELOPMENT_INI
from tests.support.problems import assert_problem

MAINTENANCE = Path(sys.executable).with_name("myservice-maintenance")

#: How long a process may take to follow the switch: development.ini's period, plus margin.
CHECK_SECONDS = float(get_appsettings(str(DEVELOPMENT_INI))["myservice.maintenance_check_seconds"])
FOLLOW_DEADLINE = CHECK_SECONDS + 3

READY = {"status": "ok", "database": "ok"}


@pytest.fixture(autouse=True)
def switched_off_afterwards(db_url):
    yield
    with session_scope({"sqlalchemy.url": db_url}) as session:
        switch_mode(session, False)


def maintenance(db_url, action):
    """Run the console script as an operator does; its output."""
    result = subprocess.run(
        [MAINTENANCE, DEVELOPMENT_INI, action],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def first_reply_with(server, status, what):
    """POST /users until one answers ``status``; fails after ``FOLLOW_DEADLINE`` seconds."""
    deadline = time.monotonic() + FOLLOW_DEADLINE
    while True:
        reply = call(server, "POST", "/users", user_body())
        if reply.status == status:
            return reply
        assert reply.status in (201, 503), reply.body
        assert time.monotonic() < deadline, f"{what}: still {reply.status} after the deadline"
        time.sleep(0.05)


def stored_state(db_url, user_id, group_id):
    """Everything a write could change: row counts, and the versions of the user and group."""
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        counts = {
            model.__tablename__: connection.scalar(select(func.count()).select_from(model))
            for model in (User, Group, Membership, Change, IdempotencyKey)
        }
        user = connection.execute(select(User.version).where(User.id == user_id)).scalar()
        group = connection.execute(select(Group.version).where(Group.id == group_id)).scalar()
    return {**counts, "user version": user, "group version": group}


def writes(user_id, group_id, other_id):
    """One of each write of the API: (method, path, body, headers)."""
    return [
        ("POST", "/users", user_body(), {}),
        ("POST", "/users", user_body(), {"Idempotency-Key": unique("key")}),
        ("POST", "/users/bulk", {"users": [user_body()]}, {}),
        ("PATCH", f"/users/{user_id}", {"full_name": "changed"}, {}),
        ("DELETE", f"/users/{user_id}", None, {}),
        ("POST", "/groups", {"name": unique("g")}, {}),
        ("PATCH", f"/groups/{group_id}", {"description": "changed"}, {}),
        ("DELETE", f"/groups/{group_id}", None, {}),
        ("PUT", f"/groups/{group_id}/members/{other_id}", None, {}),
        ("DELETE", f"/groups/{group_id}/members/{user_id}", None, {}),
    ]


def test_the_switch_refuses_every_write_within_seconds_serves_reads_and_turns_back(server, db_url):
    user, other = (call(server, "POST", "/users", user_body()).json() for _ in range(2))
    group = call(server, "POST", "/groups", {"name": unique("g")}).json()
    assert call(server, "PUT", f"/groups/{group['id']}/members/{user['id']}").status == 201
    group = call(server, "GET", f"/groups/{group['id']}").json()

    switched_on = maintenance(db_url, "on")
    assert switched_on.startswith("read-only since "), switched_on
    assert maintenance(db_url, "status").splitlines()[0] == switched_on.splitlines()[0]
    refused = first_reply_with(server, 503, "writes after the switch was turned on")
    assert "read-only" in assert_problem(refused, 503)["detail"]

    before = stored_state(db_url, user["id"], group["id"])
    for method, path, body, headers in writes(user["id"], group["id"], other["id"]):
        reply = call(server, method, path, body, headers)
        problem = assert_problem(reply, 503)
        assert int(reply.headers["Retry-After"]) > 0, f"{method} {path}"
        assert "read-only" in problem["detail"], f"{method} {path}"
    assert stored_state(db_url, user["id"], group["id"]) == before  # nothing, not even a key

    assert call(server, "GET", f"/users/{user['id']}").json() == user
    assert call(server, "GET", f"/groups/{group['id']}").json() == group
    members = call(server, "GET", f"/groups/{group['id']}/members").json()["items"]
    assert [member["id"] for member in members] == [user["id"]]
    assert call(server, "GET", "/changes").status == 200
    assert call(server, "GET", "/health/ready").json() == {**READY, "mode": "read-only"}

    switched_off = maintenance(db_url, "off")
    assert switched_off.startswith("read-write since "), switched_off
    created = first_reply_with(server, 201, "writes after the switch was turned off").json()
    assert call(server, "GET", f"/users/{created['id']}").json() == created
    assert call(server, "GET", "/health/ready").json() == {**READY, "mode": "read-write"}


def test_switching_to_the_mode_in_force_changes_nothing(db_url):
    first = maintenance(db_url, "on").splitlines()[0]
    assert maintenance(db_url, "on").splitlines()[0] == first  # the same "since"
    assert maintenance(db_url, "off").startswith("read-write since ")


def test_read_only_in_the_ini_refuses_writes_from_startup_and_serves_reads(app_settings):
    app = myservice.main({}, **{**app_settings, "myservice.read_only": "true"})
    token = new_token(app_settings["sqlalchemy.url"], unique("read-only"), ["read", "write"])
    client = with_token(app, token)
    try:
        body = user_body()
        refused = client.post_json("/users", body, status=503)
        assert refused.content_type == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert "read-only" in refused.json["detail"]
        assert client.get("/users", {"username": body["username"]}).json["items"] == []
        assert client.get("/health/ready").json == {**READY, "mode": "read-only"}
        # Requests that write nothing are answered as ever: an unknown URL, a bad method.
        client.post_json("/nowhere", body, status=404)
        client.post_json("/health", body, status=405)
    finally:
        app.registry["dbsession_factory"].kw["bind"].dispose()


# -- the tools: each that writes refuses while read-only, unless told it is part of the work ----

#: The exit status of a write refused for maintenance (EX_TEMPFAIL: try again later).
REFUSED = 75


def tool(db_url, name, *args):
    """Run the console script ``name`` with ``args`` (``INI`` stands for development.ini) as an
    operator does; its result."""
    args = [DEVELOPMENT_INI if arg == "INI" else arg for arg in args]
    return subprocess.run(
        [Path(sys.executable).with_name(name), *args],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result, name):
    assert result.returncode == REFUSED, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{name}: the service is read-only for maintenance since "), line
    assert line.endswith("pass --during-maintenance"), line


def tokens_named(db_url, name):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        query = select(TOKENS.c.revoked).where(TOKENS.c.name == name)
        return connection.scalars(query).all()


def test_the_importer_stores_nothing_while_read_only_unless_told_to(db_url, tmp_path, empty_tables):
    names = [unique("imported") for _ in range(2)]
    users = tmp_path / "users.csv"
    users.write_text("username,email\n" + "".join(f"{n},{n}@example.org\n" for n in names))
    maintenance(db_url, "on")

    assert_refused(tool(db_url, "myservice-import", "INI", users), "myservice-import")
    assert usernames_among(db_url, names) == []

    allowed = tool(db_url, "myservice-import", "INI", users, "--during-maintenance")
    assert allowed.returncode == 0, allowed.stderr
    assert usernames_among(db_url, names) == names


def usernames_among(db_url, names):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        query = select(User.username).where(User.username.in_(names)).order_by(User.id)
        return connection.scalars(query).all()


def test_the_purge_deletes_nothing_while_read_only_unless_told_to(db_url, token, empty_tables):
    # ``token``: the keys belong to the tests' token
    with short_lived_engine(db_url) as engine, engine.begin() as connection:
        expired = set(add_keys(connection, utcnow() - timedelta(days=1), 3))
    maintenance(db_url, "on")

    assert_refused(tool(db_url, "myservice-purge", "INI"), "myservice-purge")
    assert stored_keys_among(db_url, expired) == expired

    allowed = tool(db_url, "myservice-purge", "INI", "--during-maintenance")
    assert allowed.stdout == "purged 3 expired idempotency keys\n", allowed.stderr
    assert stored_keys_among(db_url, expired) == set()


def stored_keys_among(db_url, keys):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return stored_keys(connection) & keys


def test_a_token_is_created_while_read_only_only_when_told_to(db_url):
    name = unique("maintenance")
    create = ("create", "INI", "--name", name, "--scope", "read")
    maintenance(db_url, "on")

    refused = tool(db_url, "myservice-token", *create)
    assert_refused(refused, "myservice-token")
    assert refused.stdout == ""  # no secret shown for a token that was not stored
    assert tokens_named(db_url, name) == []

    allowed = tool(db_url, "myservice-token", *create, "--during-maintenance")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ms_")
    assert tokens_named(db_url, name) == [False]


def test_revoking_and_listing_tokens_work_while_read_only(db_url):
    name = unique("leaked")
    new_token(db_url, name, ["read"])
    maintenance(db_url, "on")

    listed = tool(db_url, "myservice-token", "list", "INI")
    revoked = tool(db_url, "myservice-token", "revoke", "INI", name)

    assert listed.returncode == 0 and f"\n{name}\t" in listed.stdout
    assert revoked.returncode == 0, revoked.stderr  # taking access away never waits
    assert tokens_named(db_url, name) == [True]


def test_pshell_commits_nothing_while_read_only_unless_the_session_is_told_to(db_url, empty_tables):
    name = unique("shell")
    maintenance(db_url, "on")

    refused = pshell(
        db_url,
        f"user = models.User(username={name!r}, email={name!r} + '@example.org')",
        "dbsession.add(user)",
        "tm.commit()",
        "tm.abort()",
        "tm.begin()",
        "dbsession.info['during_maintenance'] = True",
        f"user = models.User(username={name!r} + 'x', email={name!r} + '@example.org')",
        "dbsession.add(user)",
        "tm.commit()",
    )

    assert "ServiceReadOnly: the service is read-only for maintenance since" in refused
    assert "dbsession.info['during_maintenance'] = True, and do it again" in refused
    # the second try only, told it is part of the maintenance
    assert usernames_among(db_url, [name, name + "x"]) == [name + "x"]


def pshell(db_url, *commands):
    """``pshell development.ini`` with ``commands`` as its input; what it printed on stderr
    (the interactive console's tracebacks, of exceptions raised by the commands, go there)."""
    result = subprocess.run(
        [Path(sys.executable).with_name("pshell"), "-p", "python", DEVELOPMENT_INI],
        input="\n".join(commands) + "\n",
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr
