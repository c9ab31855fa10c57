"""Hostile input: every malformed, oversized or malicious request is a 4xx problem document,
stores nothing (every table is read back unchanged), and shows nothing of the internals.

The WSGI app (``testapp``) where the app alone decides; the real server where only a server
shows it: 10 MB bodies, a Content-Length that lies, CR, LF and NUL inside headers, raw bytes in
the request line. Proved elsewhere and not repeated here: strict JSON, 413 and 415 on
POST /users and invalid request ids (test_general_rules), the server's body limit and its own
400/431 (test_http_server), one 422 per field (test_users, test_groups, test_users_bulk),
``after``/``limit`` of /changes up to 2^63 (test_changes).
"""

import http.client
import json
import re
import select as selecting
import socket
import traceback
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from myservice.data.models import MAX_ID, Base
from myservice.data.models.token import TOKENS
from tests.conftest import short_lived_engine
from tests.realserver import VALID_REQUEST_ID, Reply, call, unique
from tests.realserver import assert_problem as assert_server_problem
from tests.test_http_server import assert_closed, authorization, connect, head, read_reply
from tests.test_users import assert_problem

#: What no response may show: a traceback, a source path, SQL, a library, a Python class name.
INTERNALS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/usr/|sqlalchemy|psycopg|sqlite|pydantic|jiter"
    r"|webob|waitress|\bSELECT\b|\bINSERT INTO\b|\bDELETE FROM\b|\bUPDATE \w+ SET\b|<class"
    r"|[A-Za-z](?:Error|Exception)\b",
)

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


def snapshot(connection):
    """Every row of every table, in key order: what any stored write would change (but a
    token's ``last_used_at``, which any authenticated request may note, once a minute)."""
    return {
        table.name: connection.execute(
            select(*(c for c in table.c if c is not TOKENS.c.last_used_at)).order_by(
                *table.primary_key
            )
        ).all()
        for table in Base.metadata.sorted_tables
    }


@contextmanager
def stores_nothing(read):
    before = read()
    yield
    assert read() == before, "a refused request changed the database"


def assert_no_internals(text):
    leak = INTERNALS.search(text)
    assert leak is None, f"{leak.group()!r} reached the client: {text[:300]}"


def refused(response, status):
    """``response`` is a ``status`` problem document that reveals nothing; its JSON."""
    problem = assert_problem(response, status)
    assert_no_internals(response.text)
    return problem


# -- through the WSGI app ---------------------------------------------------------------------


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


@pytest.mark.parametrize("endpoint", ["POST /groups", "PATCH /groups/{group}"])
@pytest.mark.parametrize(
    "value",
    [b"5.5", b"2.5e0", b"1e400", str(2**63).encode(), str(-(2**63) - 1).encode(), b"9" * 4000],
)
def test_a_fraction_or_a_huge_number_for_max_members_is_422_and_stores_nothing(
    testapp, database, existing, endpoint, value
):
    body = b'{"name": "mallory", "max_members": %b}' % value
    problem = assert_refused_and_nothing_stored(testapp, database, existing, endpoint, body, 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/max_members"]


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


# -- on the real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(server):
    """Two users, the first in a group, committed on the module's server."""
    users = []
    for _ in range(2):
        name = unique("hostile")
        reply = call(server, "POST", "/users", {"username": name, "email": f"{name}@example.org"})
        users.append(reply.json()["id"])
    group = call(server, "POST", "/groups", {"name": unique("hostile")}).json()["id"]
    assert call(server, "PUT", f"/groups/{group}/members/{users[0]}").status == 201
    return {"user": users[1], "group": group}


@pytest.fixture
def server_database(db_url, rows):
    """Reads every table on a connection of its own: what the server committed."""

    def read():
        with short_lived_engine(db_url) as engine, engine.connect() as connection:
            return snapshot(connection)

    return read


def exchange(server, request, *, stream=0, close_sending=False):
    """``request`` (bytes) on a new connection, then the server's answer as a Reply, or None
    when it closed the connection without one.

    ``stream``: that many more body bytes, sent for as long as the server has not answered.
    ``close_sending``: then shut our side for writing, as a client that gave up. Only for tests
    about the bytes of HTTP; heads come from ``head`` (test_http_server), where a header that
    every request needs belongs.
    """
    with connect(server) as sock:
        sock.sendall(request)
        send_until_answered(sock, stream)
        if close_sending:
            sock.shutdown(socket.SHUT_WR)
        try:
            status, headers, body = read_reply(sock, request.split(b" ", 1)[0].decode())
        except http.client.RemoteDisconnected:
            return None
        assert_no_internals(body.decode("utf-8", "replace"))
        if headers["Connection"] == "close":
            assert_closed(sock)
        return Reply(status, headers, body)


def send_until_answered(sock, size):
    chunk, sent = b" " * 65536, 0
    while sent < size and not selecting.select([sock], [], [], 0)[0]:
        try:
            sock.sendall(chunk[: size - sent])
        except (BrokenPipeError, ConnectionResetError):
            return  # the server answered and closed between the check and the send
        sent += len(chunk)


def new_user_body():
    name = unique("raw")
    return json.dumps({"username": name, "email": f"{name}@example.org"}).encode()


def post_user(server, *headers):
    return head("POST", "/users", authorization(server), f"Content-Type: {JSON}", *headers)


def test_the_server_snapshot_sees_a_stored_write(server, server_database):
    before = server_database()
    call(server, "POST", "/groups", {"name": unique("seen")})
    assert server_database() != before


@pytest.mark.parametrize(
    "route",
    [
        "POST /users",
        "POST /users/bulk",
        "POST /groups",
        "PATCH /users/{user}",
        "PATCH /groups/{group}",
        "PUT /groups/{group}/members/{user}",
    ],
)
def test_a_10_mb_body_is_refused_413_while_it_is_sent_and_stores_nothing(
    server, server_database, rows, route
):
    method, path = route.format(**rows).split(" ")
    size = 10 * 1024 * 1024
    request = head(method, path, f"Content-Type: {JSON}", f"Content-Length: {size}")
    with stores_nothing(server_database):
        reply = exchange(server, request, stream=size)

    assert_server_problem(reply, 413)
    assert reply.headers["Connection"] == "close"


@pytest.mark.parametrize(
    ("lengths", "status"),
    [
        (["-1"], 400),
        (["12abc"], 400),
        (["+{n}"], 400),
        (["0x{n:x}"], 400),
        (["{n}.0"], 400),
        (["{n}", "5"], 400),
        (["{n}", "{n}"], 400),
        (["{n}, {n}"], 400),
        ([str(2**64) + "0" * 20], 413),  # a number after all, far over the limit
    ],
    ids=lambda value: " | ".join(value) if isinstance(value, list) else str(value),
)
def test_a_content_length_that_is_not_one_number_is_refused_and_stores_nothing(
    server, server_database, lengths, status
):
    body = new_user_body()
    declared = [f"Content-Length: {length.format(n=len(body))}" for length in lengths]
    with stores_nothing(server_database):
        reply = exchange(server, post_user(server, *declared) + body)

    assert_server_problem(reply, status)
    assert reply.headers["Connection"] == "close"


def test_a_content_length_shorter_than_the_body_cuts_it_to_a_400(server, server_database):
    body = new_user_body()
    with stores_nothing(server_database):
        reply = exchange(server, post_user(server, f"Content-Length: {len(body) - 1}") + body)

    assert "not valid JSON" in assert_server_problem(reply, 400)["detail"]


def test_a_body_shorter_than_its_content_length_is_never_served_and_stores_nothing(
    server, server_database
):
    """The client stops sending: RFC 9112 (section 6.3) says the message is incomplete and the
    connection is closed; there is no request to answer and nothing to store."""
    body = new_user_body()
    request = post_user(server, f"Content-Length: {len(body) + 100}") + body
    with stores_nothing(server_database):
        assert exchange(server, request, close_sending=True) is None


def test_bodies_that_never_finish_hold_no_worker(server, server_database):
    """Twice as many clients as the server has threads stop halfway through their bodies;
    waitress buffers a body before a thread sees it, so the API still answers (a worker held
    would make the call below time out)."""
    body = new_user_body()
    request = post_user(server, f"Content-Length: {len(body) + 100}") + body
    with stores_nothing(server_database):
        stalled = [connect(server) for _ in range(8)]
        try:
            for sock in stalled:
                sock.sendall(request)
            reply = call(server, "GET", "/users?limit=1")
        finally:
            for sock in stalled:
                sock.close()

    assert reply.status == 200


INJECTED = "X-Injected"


@pytest.mark.parametrize("header", ["X-Request-ID", "Idempotency-Key", "Content-Type"])
@pytest.mark.parametrize("inside", [b"\n", b"\r", b"\x00"], ids=["LF", "CR", "NUL"])
def test_a_bare_cr_lf_or_nul_inside_a_header_is_400_and_injects_nothing(
    server, server_database, header, inside
):
    body = new_user_body()
    line = b"%s: abc%s%s: 1\r\n\r\n" % (header.encode(), inside, INJECTED.encode())
    request = head("POST", "/users", f"Content-Length: {len(body)}")[:-2] + line + body
    with stores_nothing(server_database):
        reply = exchange(server, request)

    assert_server_problem(reply, 400)
    assert INJECTED not in reply.headers


def test_a_folded_request_id_is_neither_echoed_nor_injected(server):
    request = head("GET", "/health")[:-2] + b"X-Request-ID: folded\r\n X-Injected: 1\r\n\r\n"

    reply = exchange(server, request)

    assert reply.status == 200
    assert INJECTED not in reply.headers
    assert VALID_REQUEST_ID.fullmatch(reply.headers["X-Request-ID"])
    assert "folded" not in reply.headers["X-Request-ID"]


def test_crlf_in_the_query_is_never_echoed_into_a_header(server, rows):
    # The Link header repeats the query's parameters, and only those the operation defines:
    # any other is refused, so only a filter value (which then matches nothing) could carry it.
    refused = call(server, "GET", f"/users?limit=1&x=%0D%0A{INJECTED}:%201")
    filtered = call(server, "GET", f"/users?limit=1&username=%0D%0A{INJECTED}:%201")

    assert_server_problem(refused, 400)
    assert filtered.status == 200 and filtered.json()["items"] == []
    for reply in (refused, filtered):
        assert INJECTED not in reply.headers


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/groups/{group}/members/{user}\x00", 404),
        ("/groups/{group}\x00/members/{user}", 404),
        ("/groups/{group}/members/{user}%00", 404),
        ("/groups/{group}/members/\xff", 400),
        ("/groups/{group}/members/%FF", 400),
        ("/groups/{group}/members/%C0%AF", 400),
        ("/groups/{group}/members/9223372036854775808", 404),
    ],
    ids=["nul", "nul-inside", "escaped-nul", "raw-ff", "escaped-ff", "overlong", "2**63"],
)
def test_nul_or_invalid_utf8_in_the_path_is_a_4xx_and_stores_nothing(
    server, server_database, rows, path, status
):
    with stores_nothing(server_database):
        reply = exchange(server, head("PUT", path.format(**rows), authorization(server)))

    assert_server_problem(reply, status)
