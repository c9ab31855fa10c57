"""Hostile requests that only a real server shows (``pserve``, raw bytes on a socket): 10 MB
bodies, a Content-Length that lies, bodies that never finish, CR, LF and NUL inside headers,
NUL and invalid UTF-8 in the path. Each is a 4xx problem document (or, for a request that never
ends, no answer), stores nothing (every table read back on a connection of the test's own) and
shows nothing of the internals (``tests.support.hostile``). The same through the app alone:
test_hostile_input.
"""

import http.client
import json
import select as selecting
import socket

import pytest

from tests.support.client import Reply, call
from tests.support.contract import VALID_REQUEST_ID
from tests.support.database import short_lived_engine
from tests.support.factories import unique, user_body
from tests.support.hostile import assert_no_internals, snapshot, stores_nothing
from tests.support.problems import assert_problem
from tests.support.raw_http import assert_closed, authorization, connect, head, read_reply

JSON = "application/json"


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
    about the bytes of HTTP; heads come from ``head`` (tests.support.raw_http), where a header
    that every request needs belongs.
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
    return json.dumps(user_body()).encode()


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

    assert_problem(reply, 413)
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

    assert_problem(reply, status)
    assert reply.headers["Connection"] == "close"


def test_a_content_length_shorter_than_the_body_cuts_it_to_a_400(server, server_database):
    body = new_user_body()
    with stores_nothing(server_database):
        reply = exchange(server, post_user(server, f"Content-Length: {len(body) - 1}") + body)

    assert "not valid JSON" in assert_problem(reply, 400)["detail"]


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

    assert_problem(reply, 400)
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

    assert_problem(refused, 400)
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

    assert_problem(reply, status)
