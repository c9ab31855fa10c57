"""A bare WSGI app, no Pyramid: the baseline that shows what the server alone costs and does.

``bare.ini`` serves it with ``myservice.edge.server`` (``use = egg:myservice``); the wrk comparison
in docs/waitress-upstream.md serves the same app with stock waitress. Paths:

- ``/stream/<n>``: ``n`` bytes (``0123456789`` repeated) in 64 kB chunks, with Content-Length;
- ``/broken``: raises before it starts a response (the server answers 500 itself);
- ``/slow/<ms>``: ``Hello`` after holding its thread for ``ms`` milliseconds;
- anything else: ``Hello``.
"""

import time

CHUNK = 64_000  # a multiple of 10, so that the chunks join into one pattern


def pattern(size):
    """``size`` bytes of ``0123456789`` repeated: a body whose every byte can be checked."""
    return (b"0123456789" * (size // 10 + 1))[:size]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/broken":
        raise RuntimeError("broken before the response started")
    if path.startswith("/slow/"):
        time.sleep(int(path.removeprefix("/slow/")) / 1000)
    elif path.startswith("/stream/"):
        size = int(path.removeprefix("/stream/"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
        return (pattern(min(CHUNK, size - sent)) for sent in range(0, size, CHUNK))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"Hello"]


def main(global_config, **settings):
    """The ``paste.app_factory`` (``use = call:tests.support.bare_app:main``)."""
    return app
