"""Requests to a real server (``tests.support.servers``) over HTTP, one connection each, and the
two things every client does, whichever it is: create, and read.

``created`` and ``fetched`` take either client a test has: WebTest's ``TestApp`` (the app in
process) or a real ``Server``.
"""

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import webtest

#: Seconds the client waits for any answer: a request that hangs fails with a timeout.
CLIENT_TIMEOUT = 10


def bearer(secret):
    """The ``Authorization`` header that presents the token ``secret``."""
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(server, method, path, body=None, headers=(), timeout=CLIENT_TIMEOUT):
    """One request on a new connection, with the server's token unless ``headers`` name an
    ``Authorization`` (None: none at all); ``body`` is sent as JSON (bytes: as they are)."""
    headers = {**bearer(server.token), **dict(headers)}
    if headers["Authorization"] is None:
        del headers["Authorization"]
    if body is not None:
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def concurrently(function, arguments):
    """``function`` of each argument, each in its own thread, all released at the same moment."""
    start = threading.Barrier(len(arguments))

    def run(argument):
        start.wait(timeout=CLIENT_TIMEOUT)
        return function(argument)

    with ThreadPoolExecutor(max_workers=len(arguments)) as pool:
        return list(pool.map(run, arguments))


def created(client, path, body):
    """POST ``body`` (JSON) to ``path`` through ``client``: the JSON of its 201, which it must
    answer."""
    if isinstance(client, webtest.TestApp):
        return client.post_json(path, body, status=201).json
    reply = call(client, "POST", path, body)
    assert reply.status == 201, reply.body
    return reply.json()


def fetched(client, path):
    """GET ``path`` through ``client``: the JSON of its 200, which it must answer."""
    if isinstance(client, webtest.TestApp):
        return client.get(path, status=200).json
    reply = call(client, "GET", path)
    assert reply.status == 200, reply.body
    return reply.json()
