"""``myservice-erase``: a deleted person's data leaves the change feed on request (an erasure
request under data-protection law); the entries, their order and their seqs stay.

The changes are made through the real server (they really commit), the command runs as an
operator runs it, and the tables are read back directly.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from myservice.data.models import Change, IdempotencyKey
from myservice.data.models.maintenance import switch_mode
from myservice.data.scripts import session_scope
from tests.support.client import call
from tests.support.database import short_lived_engine
from tests.support.factories import unique
from tests.support.paths import DEVELOPMENT_INI

ERASE = Path(sys.executable).with_name("myservice-erase")


def erase(db_url, *user_ids):
    return subprocess.run(
        [ERASE, DEVELOPMENT_INI, *map(str, user_ids)],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def feed(db_url):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return connection.execute(select(Change).order_by(Change.seq)).all()


def idempotency_keys(db_url):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return set(connection.execute(select(IdempotencyKey.key)).scalars())


def new_user(server, key=None):
    name = unique("person")
    body = {"username": name, "email": f"{name}@example.org", "full_name": f"Name of {name}"}
    headers = {"Idempotency-Key": key} if key else {}
    reply = call(server, "POST", "/users", body, headers=headers)
    assert reply.status == 201, reply.body
    return reply.json()


@pytest.fixture
def history(server):
    """A person who was created (with an Idempotency-Key, and in a bulk create), renamed,
    joined a group and was deleted; and another who is still there, with their own key."""
    gone = new_user(server, key=unique("gone-key"))
    staying = new_user(server, key=unique("staying-key"))
    group = call(server, "POST", "/groups", {"name": unique("group")}).json()
    path = f"/users/{gone['id']}"
    assert call(server, "PATCH", path, {"full_name": "Renamed Person"}).status == 200
    assert call(server, "PUT", f"/groups/{group['id']}/members/{gone['id']}").status == 201
    bulk = call(
        server,
        "POST",
        "/users/bulk",
        {"users": [{"username": unique("bulk"), "email": f"{unique('bulk')}@example.org"}]},
        headers={"Idempotency-Key": unique("bulk-key")},
    )
    assert bulk.status == 201, bulk.body
    assert call(server, "DELETE", path).status == 204
    return {"gone": gone, "staying": staying}


def test_erasing_a_deleted_user_nulls_its_data_and_keeps_every_entry_in_place(
    server, db_url, history
):
    gone, staying = history["gone"], history["staying"]
    before = feed(db_url)
    keys_before = idempotency_keys(db_url)

    result = erase(db_url, gone["id"])

    assert result.returncode == 0, result.stderr
    after = feed(db_url)
    path = f"/users/{gone['id']}"
    assert [(c.seq, c.at, c.type, c.resource) for c in after] == [
        (c.seq, c.at, c.type, c.resource) for c in before
    ]
    erased = [c for c in after if c.resource == path and c.type in ("user.created", "user.updated")]
    assert len(erased) == 2 and all(change.data is None for change in erased)
    erased_seqs = {change.seq for change in erased}
    assert [c.data for c in after if c.seq not in erased_seqs] == [
        c.data for c in before if c.seq not in erased_seqs
    ]
    text = repr([c.data for c in after])
    assert gone["email"] not in text and gone["username"] not in text
    assert staying["email"] in text
    assert len(keys_before - idempotency_keys(db_url)) == 1  # the create's stored response
    assert result.stdout.strip() == (
        f"user {gone['id']}: erased the data of 2 changes, forgot 1 idempotency key"
    )
    feed_over_http = call(server, "GET", f"/changes?after={erased[0].seq - 1}&limit=1").json()
    assert feed_over_http["items"][0]["data"] is None


def test_a_user_that_still_exists_is_not_erased(server, db_url, history):
    staying = history["staying"]
    before = feed(db_url)

    result = erase(db_url, staying["id"])

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"myservice-erase: user {staying['id']} exists: delete it first (DELETE /users/"
        f"{staying['id']}), then erase it"
    )
    assert feed(db_url) == before


def test_a_user_the_feed_never_named_is_an_error(db_url):
    result = erase(db_url, 9_000_000_000)

    assert result.returncode == 1
    assert "no change names user 9000000000" in result.stderr


@pytest.fixture
def read_only(db_url):
    """The service read-only for maintenance (``myservice-maintenance INI on``) during the test."""
    with session_scope({"sqlalchemy.url": db_url}) as session:
        switch_mode(session, True)
    yield
    with session_scope({"sqlalchemy.url": db_url}) as session:
        switch_mode(session, False)


def test_erasure_waits_for_the_end_of_maintenance_unless_told_it_is_part_of_it(
    server, db_url, history, read_only
):
    gone = history["gone"]
    before = feed(db_url)

    refused = erase(db_url, gone["id"])

    assert refused.returncode == 75, refused.stdout + refused.stderr
    [line] = refused.stderr.splitlines()  # one line, no traceback
    assert line.startswith("myservice-erase: the service is read-only for maintenance"), line
    assert feed(db_url) == before

    allowed = erase(db_url, gone["id"], "--during-maintenance")

    assert allowed.returncode == 0, allowed.stderr
    assert gone["email"] not in repr([change.data for change in feed(db_url)])
