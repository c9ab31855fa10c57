"""Page cursors: each is bound to its listing and filter, and signed by a secret that must be
strong and can be rotated.

A cursor is the ``next_cursor`` of one listing (``/users``, ``/groups``, one group's members,
one user's groups) with one set of filters; any other listing or filter refuses it with 400.
The secret that signs it (``MYSERVICE_SECRET``, or ``myservice.secret``) is refused at startup
when weak; the previous secrets (``MYSERVICE_PREVIOUS_SECRETS``) still verify the cursors they
signed, while new cursors are signed with the new one.
"""

import os
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import pytest
from pyramid.exceptions import ConfigurationError

import myservice
from tests.support.app import rolled_back, with_token
from tests.support.paths import ROOT
from tests.support.problems import assert_problem

#: Two strong secrets: the one that signed the cursors in flight, and the one that replaces it.
OLD_SECRET = "old-cursor-secret-7Kq2mXv9Lp4Rz8Wn3Bt6"
NEW_SECRET = "new-cursor-secret-Yc1Hd5Gf0JsQ8uE2aT4w"


@pytest.fixture
def listings(testapp):
    """Three users and three groups, the first two users in the first two groups: every listing
    below has a second page at ``limit=1``."""
    users = [
        testapp.post_json("/users", {"username": f"u{n}x", "email": f"u{n}@example.org"}).json
        for n in range(3)
    ]
    groups = [testapp.post_json("/groups", {"name": f"g{n}"}).json for n in range(3)]
    for group in groups[:2]:
        for user in users[:2]:
            testapp.put(f"/groups/{group['id']}/members/{user['id']}", status=201)
    return {
        "users": "/users",
        "groups": "/groups",
        "members of g0": f"/groups/{groups[0]['id']}/members",
        "members of g1": f"/groups/{groups[1]['id']}/members",
        "groups of u0": f"/users/{users[0]['id']}/groups",
        "groups of u1": f"/users/{users[1]['id']}/groups",
        "users named u2x": "/users?username=u2x",
        "users at u2@": "/users?email=u2@example.org",
        "groups named g2": "/groups?name=g2",
    }


#: The listings that have a second page (a filter matches one row at most, so a cursor is only
#: ever presented to a filtered listing, never issued by one).
PAGED = ["users", "groups", "members of g0", "members of g1", "groups of u0", "groups of u1"]


def next_cursor(testapp, url):
    cursor = testapp.get(url, {"limit": 1}).json["next_cursor"]
    assert cursor is not None, url
    return cursor


def presented(testapp, url, cursor, status):
    return testapp.get(url, {"limit": 1, "cursor": cursor}, status=status)


def test_a_cursor_takes_its_own_listing_to_its_next_page_whatever_the_limit(testapp, listings):
    for name in PAGED:
        first = testapp.get(listings[name], {"limit": 1}).json
        second = testapp.get(listings[name], {"limit": 2, "cursor": first["next_cursor"]}).json
        assert second["items"] and second["items"][0]["id"] > first["items"][0]["id"], name


@pytest.mark.parametrize(
    ("issued_by", "presented_to"),
    [
        *permutations(PAGED, 2),
        ("users", "users named u2x"),
        ("users", "users at u2@"),
        ("groups", "groups named g2"),
    ],
)
def test_a_cursor_of_one_listing_or_filter_is_400_on_another(
    testapp, listings, issued_by, presented_to
):
    cursor = next_cursor(testapp, listings[issued_by])

    problem = assert_problem(presented(testapp, listings[presented_to], cursor, 400), 400)

    assert problem["errors"] == [
        {"parameter": "cursor", "detail": "belongs to another listing or filter"}
    ]


def test_the_same_listing_through_a_zero_padded_id_takes_the_cursor(testapp, listings):
    cursor = next_cursor(testapp, listings["members of g0"])
    group_id = listings["members of g0"].split("/")[2]

    presented(testapp, f"/groups/00{group_id}/members", cursor, 200)


# -- the secret ------------------------------------------------------------------------------


def app_signing_with(app_settings, secret, previous=""):
    settings = {**app_settings, "myservice.secret": secret}
    if previous:
        settings["myservice.previous_secrets"] = previous
    return myservice.main({}, **settings)


def issued_by(app, token):
    """A cursor that ``app`` issued: the ``next_cursor`` of /users?limit=1 over two users."""
    with rolled_back(app):
        client = with_token(app, token)
        for name in ("ada", "grace"):
            client.post_json("/users", {"username": name, "email": f"{name}@example.org"})
        return next_cursor(client, "/users")


def accepts(app, token, cursor):
    with rolled_back(app):
        status = presented(with_token(app, token), "/users", cursor, "*").status_code
    assert status in (200, 400)
    return status == 200


def test_after_a_rotation_old_cursors_still_work_and_new_ones_are_signed_with_the_new_secret(
    app_settings, token
):
    before = app_signing_with(app_settings, OLD_SECRET)
    rotated = app_signing_with(app_settings, NEW_SECRET, previous=OLD_SECRET)
    after_the_old_is_dropped = app_signing_with(app_settings, NEW_SECRET)

    in_flight = issued_by(before, token)
    new = issued_by(rotated, token)

    assert accepts(rotated, token, in_flight)
    assert accepts(after_the_old_is_dropped, token, new)
    assert not accepts(before, token, new)  # signed with the new secret, not the old
    assert not accepts(after_the_old_is_dropped, token, in_flight)


WEAK = {
    "31-characters": "aB3$eF6*hI9(kL2-nO5+qR8/tU1!wX4",
    "one-character-repeated": "s" * 48,
    "a-word-repeated": "secret12" * 6,
}


@pytest.mark.parametrize("secret", WEAK.values(), ids=WEAK.keys())
@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("MYSERVICE_SECRET", "MYSERVICE_SECRET"),
        ("myservice.secret", "myservice.secret"),
        ("MYSERVICE_PREVIOUS_SECRETS", "a secret of MYSERVICE_PREVIOUS_SECRETS"),
    ],
)
def test_a_weak_secret_stops_the_app_with_one_line_naming_it(
    app_settings, monkeypatch, secret, source, named
):
    settings = {**app_settings, "myservice.secret": NEW_SECRET}
    if source == "myservice.secret":
        settings[source] = secret
    else:
        monkeypatch.setenv(source, secret)

    with pytest.raises(ConfigurationError) as refused:
        myservice.main({}, **settings)

    message = str(refused.value)
    assert message.startswith(f"{named} is too weak: ")
    assert "\n" not in message and secret not in message
    assert "secrets.token_urlsafe" in message  # how to make a strong one


def test_pserve_refuses_a_weak_secret_with_one_line_and_a_failing_status(db_url):
    result = subprocess.run(
        [Path(sys.executable).with_name("pserve"), "production.ini"],
        env={**os.environ, "DATABASE_URL": db_url, "MYSERVICE_SECRET": "changeme"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "MYSERVICE_SECRET is too weak: it has 8 characters, fewer than 32; make one with"
        " python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )
