"""The server itself (``myservice.edge.server`` over waitress), on real sockets.

The service runs from development.ini with a 64 KiB body limit, so that a refused body is
cheap to send; the bare WSGI app of tests/support/bare_app.py (no Pyramid) shows what the
server does for any app (a response far above waitress's output high watermark, an app that
fails). Raw sockets speak where http.client cannot: a body larger than announced is never sent,
a request line is broken.
"""

import http.client
import json
import re
import socket
import time

import pytest

from tests.support import factories
from tests.support.bare_app import pattern
from tests.support.client import CLIENT_TIMEOUT, Reply, bearer, call, concurrently
from tests.support.contract import VALID_REQUEST_ID
from tests.support.database import delete_all_rows
from tests.support.factories import new_user
from tests.support.raw_http import (
    CONTINUE,
    ask_to_continue,
    assert_closed,
    authorization,
    connect,
    head,
    read_reply,
    stream_until_answered,
)
from tests.support.servers import running_bare_server, running_server

LIMIT = 64 * 1024  # myservice.max_body_bytes of the module's server
ANNOUNCED = 32 * 1024 * 1024  # what a refused client claims it will send
TOO_LARGE = ("Content-Type: application/json", f"Content-Length: {ANNOUNCED}")


@pytest.fixture(scope="module")
def server(db_url, token, tmp_path_factory):
    overrides = {"myservice.max_body_bytes": str(LIMIT)}
    directory = tmp_path_factory.mktemp("http")
    try:
        with running_server(directory, db_url, overrides, token) as running:
            yield running
    finally:
        delete_all_rows(db_url)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    with running_bare_server(tmp_path_factory.mktemp("bare")) as running:
        yield running


# -- the server's own problem documents --------------------------------------------------------


def assert_server_problem(status, headers, body, expected):
    assert status == expected, body
    assert headers["Content-Type"] == "application/problem+json"
    assert VALID_REQUEST_ID.fullmatch(headers["X-Request-ID"])
    document = json.loads(body)
    assert set(document) == {"type", "title", "status", "detail"}
    assert document["type"] == "about:blank"
    assert document["status"] == expected
    assert document["title"] == http.HTTPStatus(expected).phrase
    return document


def user_body(size):
    """A valid new user as JSON of exactly ``size`` bytes (padded with whitespace)."""
    body = json.dumps(factories.user_body()).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


# -- the body limit ---------------------------------------------------------------------------


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(server):
    with connect(server) as sock:
        sock.sendall(head("POST", "/users", *TOO_LARGE, "X-Request-ID: too-big-1"))
        sock.sendall(b"{" + b" " * 16 * 1024)  # a small part of what was announced

        status, headers, body = read_reply(sock, "POST")

        problem = assert_server_problem(status, headers, body, 413)
        assert problem["detail"] == f"the body is larger than {LIMIT} bytes"
        assert headers["X-Request-ID"] == "too-big-1"
        assert headers["Connection"] == "close"
        assert_closed(sock)


def test_a_chunked_body_growing_past_the_limit_is_refused_while_it_is_sent(server):
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(
            head("POST", "/users", "Content-Type: application/json", "Transfer-Encoding: chunked")
        )
        sent = stream_until_answered(sock, chunk, ANNOUNCED)

        status, headers, body = read_reply(sock, "POST")

        assert sent < ANNOUNCED // 4, "the client sent most of its body before the answer"
        problem = assert_server_problem(status, headers, body, 413)
        assert problem["detail"] == f"the body is larger than {LIMIT} bytes"
        assert_closed(sock)


def test_a_body_exactly_at_the_limit_reaches_the_app(server):
    reply = call(server, "POST", "/users", user_body(LIMIT))

    assert reply.status == 201, reply.body


def test_a_body_one_byte_over_the_limit_is_refused(server):
    reply = call(server, "POST", "/users", user_body(LIMIT + 1))

    assert_server_problem(reply.status, reply.headers, reply.body, 413)


def test_a_refused_body_is_not_invited_with_100_continue(server):
    with connect(server) as sock:
        sock.sendall(head("POST", "/users", *TOO_LARGE, "Expect: 100-continue"))

        first_line = sock.recv(13, socket.MSG_PEEK | socket.MSG_WAITALL)
        status, headers, body = read_reply(sock, "POST")

        assert first_line == b"HTTP/1.1 413 "  # not 100 Continue
        assert_server_problem(status, headers, body, 413)


def test_a_body_within_the_limit_is_invited_with_100_continue(server):
    body = user_body(LIMIT)
    with connect(server) as sock:
        invitation = ask_to_continue(sock, server, "POST", "/users", len(body))
        sock.sendall(body)

        status, _, reply = read_reply(sock, "POST")

        assert invitation == CONTINUE
        assert status == 201, reply


def test_a_bare_wsgi_app_gets_waitress_default_body_limit(bare):
    with connect(bare) as sock:
        sock.sendall(head("POST", "/", "Content-Length: 1073741824"))

        status, headers, body = read_reply(sock, "POST")

        problem = assert_server_problem(status, headers, body, 413)
        assert problem["detail"] == "the body is larger than 1073741823 bytes"


# -- requests the server refuses itself -------------------------------------------------------


def test_a_bad_request_line_gets_a_400_problem_document(server):
    with connect(server) as sock:
        sock.sendall(b"NOT A REQUEST LINE AT ALL\r\n\r\n")

        status, headers, body = read_reply(sock)

        problem = assert_server_problem(status, headers, body, 400)
        assert problem["detail"].startswith("the request is malformed: ")
        assert_closed(sock)


def test_a_bad_header_gets_a_400_problem_document_with_the_clients_request_id(server):
    with connect(server) as sock:
        sock.sendall(head("GET", "/health", "X-Request-ID: bad-header-7", "No colon here"))

        status, headers, body = read_reply(sock)

        problem = assert_server_problem(status, headers, body, 400)
        assert problem["detail"] == "the request is malformed: invalid header"
        assert headers["X-Request-ID"] == "bad-header-7"


def test_an_invalid_client_request_id_is_replaced_on_a_server_problem(server):
    with connect(server) as sock:
        sock.sendall(head("GET", "/health", "X-Request-ID: has/slash", "No colon here"))

        status, headers, body = read_reply(sock)

        assert_server_problem(status, headers, body, 400)
        assert headers["X-Request-ID"] != "has/slash"


def test_headers_too_large_get_a_431_problem_document(server):
    with connect(server) as sock:
        sock.sendall(head("GET", "/health", "X-Filler: " + "a" * 300_000))

        status, headers, body = read_reply(sock)

        problem = assert_server_problem(status, headers, body, 431)
        assert problem["detail"] == "the request line and headers are too large"


def test_broken_chunked_framing_gets_a_400_problem_document(server):
    with connect(server) as sock:
        sock.sendall(
            head("POST", "/users", "Content-Type: application/json", "Transfer-Encoding: chunked")
            + b"zz\r\n{}\r\n0\r\n\r\n"
        )

        status, headers, body = read_reply(sock, "POST")

        problem = assert_server_problem(status, headers, body, 400)
        assert problem["detail"] == "the request is malformed: invalid chunk size"


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    server, version
):
    body = user_body(64)
    request = head(
        "POST",
        "/users",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Transfer-Encoding: chunked",
        "Connection: keep-alive",
    ).replace(b"HTTP/1.1", version.encode(), 1)
    with connect(server) as sock:
        sock.sendall(request + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))

        status, headers, reply = read_reply(sock, "POST")

        problem = assert_server_problem(status, headers, reply, 400)
        assert problem["detail"] == (
            "the request is malformed: both Content-Length and Transfer-Encoding"
        )
        assert_closed(sock)
    username = json.loads(body)["username"]
    assert call(server, "GET", f"/users?username={username}").json()["items"] == []


@pytest.mark.parametrize("coding", ["chunked", "identity", "gzip, chunked"])
def test_an_http_1_0_request_with_transfer_encoding_is_refused_and_the_connection_closed(
    server, coding
):
    """RFC 9112 (section 6.1): a Transfer-Encoding in an HTTP/1.0 request is faulty framing.
    waitress ignores it on 1.0 and answers the head as a bodiless request on a kept-alive
    connection; what a proxy sent as its chunked body would then be read as the next request."""
    body = user_body(64)
    smuggled = head("DELETE", "/users/1", authorization(server))
    request = head(
        "POST",
        "/users",
        authorization(server),
        "Content-Type: application/json",
        f"Transfer-Encoding: {coding}",
        "Connection: keep-alive",
    ).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    chunks = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
        len(body),
        body,
        len(smuggled),
        smuggled,
    )
    with connect(server) as sock:
        sock.sendall(request + chunks)

        status, headers, reply = read_reply(sock, "POST")

        problem = assert_server_problem(status, headers, reply, 400)
        assert problem["detail"] == (
            "the request is malformed: a Transfer-Encoding in an HTTP/1.0 request"
        )
        assert_closed(sock)  # and nothing after the head was read as another request
    username = json.loads(body)["username"]
    assert call(server, "GET", f"/users?username={username}").json()["items"] == []


def test_an_app_failing_before_its_response_gets_a_500_problem_document(bare):
    reply = call(bare, "GET", "/broken")

    problem = assert_server_problem(reply.status, reply.headers, reply.body, 500)
    assert "broken" not in problem["detail"] and "Error" not in problem["detail"]


# -- keep-alive -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [304, 204])
def test_the_connection_stays_open_after_a_bodiless_answer(server, status):
    path = f"/users/{new_user(server)['id']}"
    first = ("GET", path, {"If-None-Match": '"1"'}) if status == 304 else ("DELETE", path, {})

    bodiless, after = requests_on_one_connection(server, [first, ("GET", path, {})])

    assert bodiless.status == status
    assert bodiless.headers["Connection"] is None
    assert after.status == (200 if status == 304 else 404)


def test_a_304_to_a_client_asking_to_close_still_closes(server):
    user = new_user(server)
    with connect(server) as sock:
        sock.sendall(
            head(
                "GET",
                f"/users/{user['id']}",
                authorization(server),
                'If-None-Match: "1"',
                "Connection: close",
            )
        )

        status, headers, _ = read_reply(sock)

        assert status == 304
        assert headers["Connection"] == "close"
        assert_closed(sock)


def requests_on_one_connection(server, requests):
    """Each ``(method, path, headers)`` in turn on one keep-alive connection: their Replies.

    Fails when the server closed the connection on the way (http.client would open another).
    """
    connection = http.client.HTTPConnection(server.host, server.port, timeout=CLIENT_TIMEOUT)
    try:
        connection.connect()
        sock = connection.sock
        replies = []
        for method, path, headers in requests:
            connection.request(method, path, headers={**bearer(server.token), **headers})
            response = connection.getresponse()
            replies.append(Reply(response.status, response.headers, response.read()))
        assert connection.sock is sock, "the server closed the keep-alive connection"
        return replies
    finally:
        connection.close()


def health_checks(server, count):
    replies = requests_on_one_connection(server, [("GET", "/health", {})] * count)
    return [(reply.status, reply.body) for reply in replies]


def test_many_requests_on_one_keep_alive_connection_are_all_answered(server):
    replies = health_checks(server, 300)

    assert replies == [(200, b'{"status":"ok"}')] * 300


def test_concurrent_keep_alive_connections_are_all_answered(server):
    results = concurrently(lambda _: health_checks(server, 50), range(8))

    assert [len(replies) for replies in results] == [50] * 8
    assert all(reply == (200, b'{"status":"ok"}') for replies in results for reply in replies)


def test_a_keep_alive_connection_is_read_again_as_soon_as_its_response_is_sent(bare):
    """The task sends each response itself and does not wake the main loop, which must
    therefore still be polling the connection: a request it did not see would wait for the
    loop's timeout (about a second), 100 of them for minutes. Together they take milliseconds;
    the bound is 50 times that."""
    started = time.monotonic()

    replies = requests_on_one_connection(bare, [("GET", "/", {})] * 100)

    assert [(reply.status, reply.body) for reply in replies] == [(200, b"Hello")] * 100
    assert time.monotonic() - started < CLIENT_TIMEOUT


def replies_on(sock, count):
    """The next ``count`` responses on ``sock`` (each framed by its Content-Length), read from
    one stream of bytes: status and body of each."""
    replies, data = [], b""
    while len(replies) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(replies)} replies"
        data += chunk
        while b"\r\n\r\n" in data:
            head_bytes, _, rest = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?im)^content-length: *(\d+)", head_bytes)[1])
            if len(rest) < length:
                break
            replies.append((int(head_bytes.split(b" ", 2)[1]), rest[:length]))
            data = rest[length:]
    return replies


def test_requests_sent_together_are_answered_in_order_and_the_connection_stays_open(bare):
    """A client that pipelines: the second request is read while the first is served (held
    100 ms), the third after; each answer goes out in order, then the connection serves on."""
    paths = ["/stream/3", "/slow/100", "/stream/7"]
    with connect(bare) as sock:
        sock.sendall(b"".join(head("GET", path) for path in paths))
        assert replies_on(sock, 3) == [(200, b"012"), (200, b"Hello"), (200, b"0123456")]

        sock.sendall(head("GET", "/stream/5"))
        assert replies_on(sock, 1) == [(200, b"01234")]


def test_requests_queued_for_a_thread_are_warned_of_once_not_once_each(tmp_path):
    """With one thread held by a slow request, each of the next requests waits in the queue:
    stock waitress warns once per such request, ours once a minute (``server.Dispatcher``)."""
    with running_bare_server(tmp_path, {"threads": "1"}) as one_thread:
        with connect(one_thread) as slow:
            slow.sendall(head("GET", "/slow/3000"))
            quick = concurrently(lambda path: call(one_thread, "GET", path), ["/"] * 5)
            assert read_reply(slow)[0] == 200
        log = one_thread.log.read_text()
    assert [reply.status for reply in quick] == [200] * 5
    assert log.count("Task queue depth is") == 1, log


def test_a_response_far_above_the_high_watermark_arrives_whole(bare):
    size = 24 * 1024 * 1024  # bare.ini sets outbuf_high_watermark to 1 MiB

    streams = [("GET", f"/stream/{size}", {})] * 2

    results = concurrently(lambda _: requests_on_one_connection(bare, streams), range(2))

    expected = pattern(size)
    assert all(reply.status == 200 for replies in results for reply in replies)
    assert all(reply.body == expected for replies in results for reply in replies)
