"""Hostile input to the app: every malformed, oversized or malicious body, query or id is a
4xx problem document, stores nothing (every table is read back unchanged), and shows nothing
of the internals (``tests.support.hostile``).

The WSGI app (``testapp``), where the app alone decides; what only a real server shows (10 MB
bodies, a Content-Length that lies, CR, LF and NUL inside headers, raw bytes in the request
line) is test_hostile_http's. Proved elsewhere and not repeated here: strict JSON, 413 and 415
on POST /users and invalid request ids (test_general_rules), the server's body limit and its
own 400/431 (test_http_server), one 422 per field (test_users, test_groups, test_users_bulk),
``after``/``limit`` of /changes up to 2^63 (test_changes_reading).
"""

import json
import traceback
from urllib.parse import quote

import pytest
from sqlalchemy.exc import IntegrityError

from myservice.data.models import MAX_ID
from tests.support.hostile import INTERNALS, assert_no_internals, snapshot, stores_nothing
from tests.support.problems import assert_problem

JSON = "application/json"

#: A body each write accepts, whose last member's value (``%b``) is free text.
WRITES = {
    "POST /users": b'{"username": "mallory", "email": "mallory@example.com", "full_name": %b}',
    "POST /users/bulk": (
        b'{"users": [{"username": "mallory", "email": "mallory@example.com", "full_name": %b}]}'
    ),
    "POST /groups": b'{"name": "mallory", "description": %b}',
    "PATCH /users/{user}": b'{"full_name": %b}',
    "PATCH /groups/{group}": b'{"description": %b}',
}

#: Every list; all but /changes page with a cursor.
LISTS = ["/users", "/groups", "/groups/{group}/members", "/users/{user}/groups", "/changes"]
PAGED = LISTS[:-1]


def refused(response, status):
    """``response`` is a ``status`` problem document that reveals nothing; its JSON."""
    problem = assert_problem(response, status)
    assert_no_internals(response.text)
    return problem


@pytest.fixture
def existing(testapp):
    """A user in a group: what PATCH and PUT aim at, and what the filters must not match."""
    user = testapp.post_json("/users", {"username": "ada", "email": "ada@example.com"}).json
    group = testapp.post_json("/groups", {"name": "ops"}).json
    testapp.put(f"/groups/{group['id']}/members/{user['id']}", status=201)
    return {"user": user["id"], "group": group["id"]}


@pytest.fixture
def database(app, existing):
    """Reads every table through the connection of the test's requests."""
    connection = app.registry["dbsession_factory"].kw["bind"]
    return lambda: snapshot(connection)


def test_the_oracles_see_what_they_look_for(testapp, database):
    before = database()
    testapp.post_json("/groups", {"name": "seen"}, status=201)
    assert database() != before

    error = IntegrityError("INSERT INTO users (username) VALUES (?)", {}, ValueError("taken"))
    try:
        raise error
    except IntegrityError:
        leaks = [traceback.format_exc(), str(error), repr(ValueError()), "<class 'int'>"]
    for text in leaks:
        assert INTERNALS.search(text), text


def send(testapp, endpoint, ids, body=b"", status=None, **headers):
    """``endpoint`` ("PATCH /users/{user}") with ``ids`` filled in, ``body`` sent as JSON."""
    method, path = endpoint.split(" ")
    if body:
        headers["Content-Type"] = JSON
    return testapp.request(
        path.format(**ids), method=method, body=body, headers=headers, status=status
    )


def assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, status, **kw):
    with stores_nothing(database):
        return refused(send(testapp, endpoint, existing, body, status, **kw), status)


@pytest.mark.parametrize("endpoint", WRITES)
@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param(b'"\xc3\x28"', 400, id="invalid-utf8"),
        pytest.param(b'"\xc0\xaf"', 400, id="overlong-utf8"),
        pytest.param(b'"\xed\xa0\x80"', 400, id="utf8-surrogate"),
        pytest.param(b'"a\x00b"', 400, id="raw-nul"),
        pytest.param(b'"a\\u0000b"', 422, id="escaped-nul"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, 400, id="nested-10000"),
        pytest.param(b"[" * 100 + b"]" * 100, 422, id="nested-100"),
        pytest.param(b"1e400", 422, id="1e400"),
        pytest.param(b"1" + b"0" * 4300, 400, id="10**4300"),
        pytest.param(b"-" + b"9" * 4000, 422, id="4000-digits"),
    ],
)
def test_a_hostile_value_in_any_write_is_refused_and_stores_nothing(
    testapp, database, existing, endpoint, value, status
):
    body = WRITES[endpoint] % value
    problem = assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, status)
    if status == 400:
        assert "not valid JSON" in problem["detail"]
    else:
        assert problem["errors"] and all(e["pointer"] for e in problem["errors"])


DUPLICATES = [
    ("POST /users", b'{"username": "mallory", "email": "m@example.com", "username": "eve"}'),
    ("POST /users/bulk", b'{"users": [], "users": [{"username": "m", "email": "m@example.com"}]}'),
    (
        "POST /users/bulk",
        b'{"users": [{"username": "mallory", "email": "m@example.com", "email": "e@example.com"}]}',
    ),
    ("POST /groups", b'{"name": "mallory", "name": "eve"}'),
    ("PATCH /users/{user}", b'{"full_name": "Mallory", "full_name": "Eve"}'),
    ("PATCH /groups/{group}", b'{"max_members": 1, "max_members": null}'),
]


@pytest.mark.parametrize(("endpoint", "body"), DUPLICATES)
def test_a_member_named_twice_is_400_whichever_value_would_win(
    testapp, database, existing, endpoint, body
):
    problem = assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, 400)
    assert "duplicate" in problem["detail"]


@pytest.mark.parametrize("endpoint", WRITES)
@pytest.mark.parametrize(
    ("encode", "status"),
    [
        pytest.param(lambda body: b"\xef\xbb\xbf" + body, 400, id="utf8-bom"),
        pytest.param(lambda body: body.decode().encode("utf-16"), 400, id="utf16"),
        pytest.param(lambda body: body.replace(b'"Mallory"', b'"Mall\xf6ry"'), 400, id="latin1"),
        pytest.param(lambda body: body.replace(b"Mallory", b"M" * 10_000_000), 413, id="10MB"),
    ],
)
def test_a_body_not_in_utf8_or_of_10_mb_is_refused_and_stores_nothing(
    testapp, database, existing, endpoint, encode, status
):
    body = encode(WRITES[endpoint] % b'"Mallory"')
    assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, status)


#: Fractions a float cannot tell from an integer: 5000 digits after the point, a fraction far
#: below a float's smallest, a digit past a float's precision. Read as floats, they were 0 and 1.
UNDER_A_FLOATS_PRECISION = {
    "5000-digit-fraction": b"0." + b"0" * 4998 + b"1",
    "1e-99999": b"1e-99999",
    "1.00000000000000000001": b"1.00000000000000000001",
}


@pytest.mark.parametrize("endpoint", ["POST /groups", "PATCH /groups/{group}"])
@pytest.mark.parametrize(
    "value",
    [
        b"5.5",
        b"2.5e0",
        b"1e400",
        b"1e99999999",
        str(2**63).encode(),
        str(-(2**63) - 1).encode(),
        b"9" * 4000,
        *(pytest.param(value, id=name) for name, value in UNDER_A_FLOATS_PRECISION.items()),
    ],
)
def test_a_fraction_or_a_huge_number_for_max_members_is_422_and_stores_nothing(
    testapp, database, existing, endpoint, value
):
    body = b'{"name": "mallory", "max_members": %b}' % value
    problem = assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/max_members"]


#: Numbers of 5000 and 4300 digits: the first is out of every parser's range (400), the second
#: is read; both are refused, with an Idempotency-Key as without one.
LONG_NUMBERS = {
    "5000-digits": (b"9" * 5000, 400),
    "-4300-digits": (b"-" + b"9" * 4300, 422),
    "5000-digit-fraction": (b"1." + b"1" * 5000, 422),
    "1e400": (b"1e400", 422),
    **{name: (value, 422) for name, value in UNDER_A_FLOATS_PRECISION.items()},
}


@pytest.mark.parametrize("endpoint", ["POST /users", "POST /users/bulk", "POST /groups"])
@pytest.mark.parametrize(("value", "status"), LONG_NUMBERS.values(), ids=LONG_NUMBERS.keys())
def test_a_long_number_with_an_idempotency_key_is_refused_as_without_one(
    testapp, database, existing, endpoint, value, status
):
    """The key's fingerprint reads the body before the view does: a number it could not handle
    would be a 500 where the view answers 400 or 422."""
    number = {"POST /groups": b'"max_members": %b'}.get(endpoint, b'"full_name": %b') % value
    body = (
        WRITES[endpoint].replace(b'"full_name": %b', number).replace(b'"description": %b', number)
    )
    for key in ({}, {"Idempotency-Key": "long-number"}):
        assert_refused_and_nothing_stored(
            testapp, database, existing, endpoint, body, status, **key
        )


def test_a_number_past_a_floats_precision_makes_another_request_for_an_idempotency_key(
    testapp, database, existing
):
    """5.00000000000000000001 is not 5.0: with the same key it is another request (422), not a
    replay of the first, as it was when both were read as the float 5.0."""
    key = {"Idempotency-Key": "five"}
    send(testapp, "POST /groups", {}, b'{"name": "five", "max_members": 5.0}', 201, **key)

    body = b'{"name": "five", "max_members": 5.00000000000000000001}'
    problem = assert_refused_and_nothing_stored(
        testapp, database, existing, "POST /groups", body, 422, **key
    )
    assert "was used for a different request" in problem["detail"]


@pytest.mark.parametrize(
    ("endpoint", "body", "pointer"),
    [
        ("POST /users", {"username": "ada'; DROP TABLE users; --"}, "/username"),
        ("POST /users", {"email": "x@example.com'; DROP TABLE users; --"}, "/email"),
        ("POST /users", {"email": "' OR '1'='1"}, "/email"),
        ("POST /users", {"username": "mal\x00lory"}, "/username"),
        ("POST /users", {"email": "mal\x00lory@example.com"}, "/email"),
        ("POST /users/bulk", {"users": [{"username": "x' OR '1'='1"}]}, "/users/0/username"),
        ("PATCH /users/{user}", {"username": "ada' --"}, "/username"),
        ("PATCH /users/{user}", {"email": "ada@example.com\x00"}, "/email"),
        (
            "POST /groups",
            {"name": "mallory", "max_members": "1; DROP TABLE groups"},
            "/max_members",
        ),
        ("PATCH /groups/{group}", {"name": "ops\x00"}, "/name"),
        ("PATCH /groups/{group}", {"max_members": "0 OR 1=1"}, "/max_members"),
    ],
)
def test_sql_or_nul_in_a_member_with_a_strict_format_is_422_and_stores_nothing(
    testapp, database, existing, endpoint, body, pointer
):
    if endpoint == "POST /users":
        body = {"username": "mallory", "email": "mallory@example.com", **body}
    elif endpoint == "POST /users/bulk":
        body["users"][0].setdefault("email", "mallory@example.com")
    raw = json.dumps(body).encode()
    problem = assert_refused_and_nothing_stored(testapp, database, existing, endpoint, raw, 422)
    assert pointer in [e["pointer"] for e in problem["errors"]]


SQL_TEXT = [
    "Robert'); DROP TABLE users; --",
    "' OR '1'='1",
    '" OR ""="',
    "100% _sure_ \\",
    "1; SELECT 1 /* $1 :name ? */",
]


@pytest.mark.parametrize("text", SQL_TEXT)
def test_sql_metacharacters_in_free_text_are_data_stored_and_found_verbatim(testapp, text):
    group = testapp.post_json("/groups", {"name": text, "description": text}, status=201).json
    user = testapp.post_json(
        "/users", {"username": "bobby", "email": "bobby@example.com", "full_name": text}
    ).json

    assert (group["name"], group["description"], user["full_name"]) == (text, text, text)
    assert testapp.get(f"/groups/{group['id']}").json == group
    assert testapp.get(f"/users/{user['id']}").json == user
    assert testapp.get("/groups", {"name": text}).json["items"] == [group]
    assert testapp.get("/users").json["items"] == [user]


def test_an_apostrophe_in_an_email_is_stored_and_found_verbatim(testapp):
    user = testapp.post_json("/users", {"username": "obrien", "email": "o'brien@example.com"}).json

    assert testapp.get("/users", {"email": "O'Brien@Example.com"}).json["items"] == [user]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/users?username=", "' OR '1'='1"),
        ("/users?username=", "%"),
        ("/users?username=", "ad_"),
        ("/users?email=", "%@example.com"),
        ("/users?email=", "ada@example.co_"),
        ("/users?email=", "ada@example.com' --"),
        ("/groups?name=", "%"),
        ("/groups?name=", "o_s"),
        ("/groups?name=", "ops' --"),
        ("/groups?name=", "' OR 1=1 --"),
    ],
)
def test_a_filter_matches_exactly_never_as_a_pattern_or_as_sql(testapp, existing, path, value):
    assert testapp.get(path + quote(value)).json["items"] == []


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "value",
    [str(2**63), str(2**64), "9" * 4301, "1e3", "5.0", "0x10", "%2B5", "5_0", "%D9%A5", "%00"],
)
def test_a_limit_past_2_63_or_not_an_integer_is_400_naming_it(testapp, existing, path, value):
    response = testapp.get(f"{path.format(**existing)}?limit={value}", status=400)
    assert [e["parameter"] for e in refused(response, 400)["errors"]] == ["limit"]


@pytest.mark.parametrize("value", ["9999999999999999999", str(2**64), "9" * 4301, "%00"])
def test_an_after_past_2_63_or_not_an_integer_is_400_naming_it(testapp, value):
    response = testapp.get(f"/changes?after={value}", status=400)
    assert [e["parameter"] for e in refused(response, 400)["errors"]] == ["after"]


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("value", ["%00", "'%20OR%20'1'='1", "A" * 10_000, "%2E%2E%2F"])
def test_a_hostile_cursor_is_400_naming_it(testapp, existing, path, value):
    response = testapp.get(f"{path.format(**existing)}?cursor={value}", status=400)
    assert [e["parameter"] for e in refused(response, 400)["errors"]] == ["cursor"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/users", "username"), ("/users", "email"), ("/groups", "name")],
)
def test_a_nul_in_a_filter_is_400_naming_it(testapp, path, parameter):
    response = testapp.get(f"{path}?{parameter}=ada%00", status=400)
    assert [e["parameter"] for e in refused(response, 400)["errors"]] == [parameter]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", ["limit=%C0%AF", "cursor=%ED%A0%80", "name=%FF"])
def test_a_query_that_is_not_utf8_is_400_on_every_list(testapp, existing, path, query):
    response = testapp.get(f"{path.format(**existing)}?{query}", status=400)
    assert refused(response, 400)["detail"] == "the URL is not valid UTF-8"


#: Every route with an id; ``{id}`` is the hostile one, the other is a real row.
ID_ROUTES = [
    "GET /users/{id}",
    "PATCH /users/{id}",
    "DELETE /users/{id}",
    "GET /users/{id}/groups",
    "GET /groups/{id}",
    "PATCH /groups/{id}",
    "DELETE /groups/{id}",
    "GET /groups/{id}/members",
    "PUT /groups/{id}/members/{user}",
    "PUT /groups/{group}/members/{id}",
    "DELETE /groups/{id}/members/{user}",
    "DELETE /groups/{group}/members/{id}",
]


@pytest.mark.parametrize("route", ID_ROUTES)
@pytest.mark.parametrize(
    "row_id", [str(MAX_ID), str(MAX_ID + 1), "9999999999999999999", str(2**64), "1%00"]
)
def test_an_id_no_row_can_have_is_404_on_every_route_and_stores_nothing(
    testapp, database, existing, route, row_id
):
    body = b"{}" if route.startswith("PATCH") else b""
    endpoint = route.replace("{id}", row_id)
    assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, 404)


#: Digits of other scripts, which a pattern's ``\\d`` and ``int()`` would both read as 0-9.
OTHER_DIGITS = {
    "fullwidth": "\uff10",  # U+FF10 FULLWIDTH DIGIT ZERO
    "arabic-indic": "\u0660",  # U+0660 ARABIC-INDIC DIGIT ZERO
    "devanagari": "\u0966",  # U+0966 DEVANAGARI DIGIT ZERO
}


def in_other_digits(number, zero):
    """``number`` written in the digits that start at ``zero``, percent-encoded as UTF-8."""
    return quote("".join(chr(ord(zero) + int(digit)) for digit in str(number)))


@pytest.mark.parametrize("route", ID_ROUTES)
@pytest.mark.parametrize("zero", OTHER_DIGITS.values(), ids=OTHER_DIGITS.keys())
def test_an_existing_id_in_other_unicode_digits_is_404_on_every_route_and_stores_nothing(
    testapp, database, existing, route, zero
):
    """One resource, one URL: ids are ASCII digits. The id written in another script's digits
    names the very row that exists (the other id in the URL is real too), and is still 404."""
    body = b"{}" if route.startswith("PATCH") else b""
    row_id = existing["group"] if "/groups/{id}" in route else existing["user"]
    endpoint = route.replace("{id}", in_other_digits(row_id, zero))
    assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, 404)


@pytest.mark.parametrize("endpoint", ["POST /users", "POST /users/bulk", "POST /groups"])
@pytest.mark.parametrize("key", ["k\x00ey", "k\r\nSet-Cookie: a=b", "k\xffey"])
def test_a_nul_crlf_or_non_ascii_idempotency_key_is_400_and_stores_nothing(
    testapp, database, existing, endpoint, key
):
    body = WRITES[endpoint] % b'"Mallory"'
    problem = assert_refused_and_nothing_stored(
        testapp, database, existing, endpoint, body, 400, **{"Idempotency-Key": key}
    )
    assert [e["header"] for e in problem["errors"]] == ["Idempotency-Key"]
