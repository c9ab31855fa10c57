"""GET /users: a page of users by id, cursors and next links through every one of them,
filters that match exactly, a refused parameter named, and one keyset range scan a page."""

from urllib.parse import parse_qs, urlsplit

import pytest

from myservice.api.pagination import cursor_serializer
from tests.support.factories import ADA
from tests.support.problems import assert_problem


def make_users(testapp, count):
    return [
        testapp.post_json("/users", {"username": f"user{i:03}", "email": f"u{i}@example.com"}).json
        for i in range(count)
    ]


def test_list_is_a_page_ordered_by_id(testapp):
    users = make_users(testapp, 3)
    page = testapp.get("/users").json
    assert page == {"items": users, "next_cursor": None}


def test_list_follows_cursors_through_every_user_exactly_once(testapp):
    users = make_users(testapp, 7)
    seen, url = [], "/users?limit=3"
    while url:
        response = testapp.get(url)
        page = response.json
        assert len(page["items"]) <= 3
        seen += page["items"]
        if page["next_cursor"] is None:
            assert "Link" not in response.headers
            url = None
        else:
            link = response.headers["Link"]
            assert link.endswith('>; rel="next"') and "cursor=" in link
            url = link[link.index("<") + 1 : link.index(">")]
            assert page["next_cursor"] in url.replace("%3D", "=")
    assert seen == users


def test_list_defaults_to_50_per_page(testapp):
    make_users(testapp, 51)
    page = testapp.get("/users").json
    assert len(page["items"]) == 50 and page["next_cursor"]


def test_list_filters_by_username_and_email_ignoring_case(testapp):
    ada = testapp.post_json("/users", ADA).json
    make_users(testapp, 2)
    assert testapp.get("/users?username=ADA").json["items"] == [ada]
    assert testapp.get("/users?email=ada@example.com").json["items"] == [ada]
    assert testapp.get("/users?email=nobody@example.com").json["items"] == []


def next_link(response):
    """The URL of the ``Link: <...>; rel="next"`` header."""
    link = response.headers["Link"]
    assert link.endswith('>; rel="next"'), link
    return link[link.index("<") + 1 : link.index(">")]


def test_the_next_link_keeps_the_query_and_replaces_only_the_cursor(testapp):
    """The next link is the request's own URL with the next cursor instead of its own. (The
    filters, username and email, are unique: a filtered list has one page, so ``limit`` is the
    parameter that shows the query kept.)"""
    users = make_users(testapp, 5)

    second = testapp.get(next_link(testapp.get("/users?limit=2")))
    assert second.json["items"] == users[2:4]  # still two to a page
    link = next_link(second)
    assert parse_qs(urlsplit(link).query) == {
        "limit": ["2"],
        "cursor": [second.json["next_cursor"]],  # the new cursor, the old one gone
    }
    assert testapp.get(link).json == {"items": users[4:], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=1&limit=2", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=%C3%A9", "cursor"),
        ("username=%00", "username"),
        ("email=a%00b", "email"),
    ],
)
def test_list_with_a_bad_parameter_is_400_naming_it(testapp, query, parameter):
    response = testapp.get(f"/users?{query}", status=400)
    problem = assert_problem(response, 400)
    assert [e["parameter"] for e in problem["errors"]] == [parameter]


def test_an_edited_cursor_is_400(testapp):
    make_users(testapp, 3)
    cursor = testapp.get("/users?limit=1").json["next_cursor"]
    for forged in (cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), cursor[1:], cursor + "x"):
        testapp.get("/users", {"cursor": forged}, status=400)


def test_a_cursor_signed_with_another_secret_is_400(testapp, app_settings):
    users = make_users(testapp, 3)
    after_first = {"after": users[0]["id"]}
    ours = cursor_serializer(app_settings["myservice.secret"]).dumps(after_first).decode()
    forged = cursor_serializer("not-our-secret").dumps(after_first).decode()

    # The same payload, signed with the service's secret, is a cursor it accepts ...
    assert testapp.get("/users", {"cursor": ours}).json["items"] == users[1:]
    # ... so only the secret makes this one a forgery.
    response = testapp.get("/users", {"cursor": forged}, status=400)
    assert [error["parameter"] for error in assert_problem(response, 400)["errors"]] == ["cursor"]


def test_a_page_is_one_keyset_range_scan_never_an_offset(testapp, executed_sql):
    make_users(testapp, 3)
    cursor = testapp.get("/users?limit=1").json["next_cursor"]
    executed_sql.clear()
    testapp.get("/users", {"limit": 1, "cursor": cursor})
    [(query, parameters)] = [e for e in executed_sql if e[0].lstrip().upper().startswith("SELECT")]
    assert "users.id >" in query and "ORDER BY users.id" in query
    if "OFFSET" in query.upper():  # SQLite always renders one: it must skip nothing
        assert list(parameters)[-1] == 0
