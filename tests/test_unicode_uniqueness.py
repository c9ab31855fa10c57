"""Emails and group names are unique in any case and any Unicode composition, on both databases,
the same way for a single create, a PATCH, a bulk create and the importer.

Two values are one when their *caseless* forms are equal: NFD, case-folded, NFC (Unicode's
canonical caseless match), of the email as email-validator normalizes it, or of the group name.
So ``renée`` and ``RENÉE``, ``é`` composed and ``e`` + U+0301, ``Straße`` and ``STRASSE`` are
one; SQLite's ``lower()`` folded ASCII only, and neither database's ``lower()`` composes.
"""

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import select

from myservice.data.models import User
from tests.support.database import short_lived_engine
from tests.support.paths import DEVELOPMENT_INI
from tests.support.problems import assert_problem

DECOMPOSED = "rene\u0301e"  # e + COMBINING ACUTE ACCENT

#: (stored first, then the same address written another way).
SAME_EMAILS = {
    "accented-case": ("renée@example.com", "RENÉE@example.com"),
    "composition": ("renée@example.com", f"{DECOMPOSED}@example.com"),
    "composition-and-case": (f"{DECOMPOSED}@example.com", "RENÉE@EXAMPLE.COM"),
    "sharp-s": ("straße@example.com", "STRASSE@example.com"),
    "greek-final-sigma": ("οδυσσευς@example.com", "ΟΔΥΣΣΕΥΣ@example.com"),
    "unicode-domain": ("ada@éxample.com", "ada@ÉXAMPLE.com"),
}

#: (stored first, then the same name written another way).
SAME_NAMES = {
    "accented-case": ("équipe", "ÉQUIPE"),
    "composition": ("équipe", "e\u0301quipe"),
    "sharp-s": ("Straße", "STRASSE"),
    "cyrillic": ("команда", "КОМАНДА"),
}

emails = pytest.mark.parametrize(("first", "second"), SAME_EMAILS.values(), ids=SAME_EMAILS)
names = pytest.mark.parametrize(("first", "second"), SAME_NAMES.values(), ids=SAME_NAMES)


def new_user(testapp, username, email, status=201):
    return testapp.post_json("/users", {"username": username, "email": email}, status=status)


# -- users -------------------------------------------------------------------------------------


@emails
def test_a_create_with_the_same_email_written_another_way_is_409(testapp, first, second):
    new_user(testapp, "first", first)

    problem = assert_problem(new_user(testapp, "second", second, status=409), 409)

    assert "email" in problem["detail"]
    assert [user["username"] for user in testapp.get("/users").json["items"]] == ["first"]


@emails
def test_a_patch_to_the_same_email_written_another_way_is_409(testapp, first, second):
    new_user(testapp, "first", first)
    other = new_user(testapp, "other", "other@example.com").json

    response = testapp.patch_json(f"/users/{other['id']}", {"email": second}, status=409)

    assert "email" in assert_problem(response, 409)["detail"]
    assert testapp.get(f"/users/{other['id']}").json["email"] == "other@example.com"


@emails
def test_a_user_may_rewrite_its_own_email_another_way(testapp, first, second):
    user = new_user(testapp, "first", first).json

    testapp.patch_json(f"/users/{user['id']}", {"email": second}, status=200)


@emails
def test_the_email_filter_finds_the_address_written_another_way(testapp, first, second):
    user = new_user(testapp, "first", first).json

    assert testapp.get("/users", {"email": second}).json["items"] == [user]


def test_an_email_is_stored_composed_with_its_domain_lower_cased(testapp):
    """email-validator's normalized form: NFC, the domain lower-cased (and IDNA-mapped), the
    local part's case as given."""
    user = new_user(testapp, "renee", f"{DECOMPOSED}@Example.COM").json

    assert user["email"] == "renée@example.com"
    assert unicodedata.is_normalized("NFC", user["email"])


@emails
def test_a_bulk_create_refuses_the_same_email_written_another_way_inside_the_batch(
    testapp, first, second
):
    batch = [{"username": "first", "email": first}, {"username": "second", "email": second}]

    response = testapp.post_json("/users/bulk", {"users": batch}, status=409)

    assert assert_problem(response, 409)["errors"] == [
        {"pointer": "/users/1/email", "detail": "email is taken"}
    ]
    assert testapp.get("/users").json["items"] == []


@emails
def test_a_bulk_create_refuses_the_same_email_written_another_way_as_a_stored_one(
    testapp, first, second
):
    new_user(testapp, "first", first)
    batch = [{"username": "second", "email": second}]

    response = testapp.post_json("/users/bulk", {"users": batch}, status=409)

    assert assert_problem(response, 409)["errors"][0]["pointer"] == "/users/0/email"


# -- groups ------------------------------------------------------------------------------------


@names
def test_a_group_named_the_same_written_another_way_is_409(testapp, first, second):
    testapp.post_json("/groups", {"name": first}, status=201)

    response = testapp.post_json("/groups", {"name": second}, status=409)

    assert "name" in assert_problem(response, 409)["detail"]


@names
def test_a_group_renamed_to_the_same_name_written_another_way_is_409(testapp, first, second):
    testapp.post_json("/groups", {"name": first}, status=201)
    other = testapp.post_json("/groups", {"name": "other"}, status=201).json

    testapp.patch_json(f"/groups/{other['id']}", {"name": second}, status=409)


@names
def test_the_name_filter_finds_the_group_written_another_way(testapp, first, second):
    group = testapp.post_json("/groups", {"name": first}, status=201).json

    assert testapp.get("/groups", {"name": second}).json["items"] == [group]


def test_a_group_name_is_stored_composed_and_in_the_case_given(testapp):
    group = testapp.post_json("/groups", {"name": "E\u0301quipe"}, status=201).json

    assert group["name"] == "Équipe"


# -- the importer ------------------------------------------------------------------------------


def test_the_importer_rejects_the_same_email_written_another_way(db_url, tmp_path, empty_tables):
    rows = "username,email\nfirst,renée@example.com\nsecond,RENE\u0301E@example.com\n"
    (tmp_path / "users.csv").write_text(rows, encoding="utf-8")

    result = subprocess.run(
        [Path(sys.executable).with_name("myservice-import"), DEVELOPMENT_INI, "users.csv"],
        env={**os.environ, "DATABASE_URL": db_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1, result.stderr
    assert "line 3: email: 'RENÉE@example.com' is taken by another user" in result.stdout
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        assert connection.execute(select(User.username)).scalars().all() == ["first"]
