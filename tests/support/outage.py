"""Helpers for the tests that put the database out of reach or make it slow: every answer
must come within a bound, and a refusal must be a clean 503 problem document."""

import threading
import time
from contextlib import ExitStack

from tests.support.problems import assert_problem, status_of

#: What a problem document must never show the client.
INTERNALS = ("psycopg", "OperationalError", "DatabaseTimeout", "SQL", "Traceback")


def answered_within(bound, send, what):
    """The result of ``send()``; the test fails if it takes ``bound`` seconds or more.

    ``send`` runs in a daemon thread, so a request that hangs fails the test instead of
    hanging it.
    """
    outcome = {}

    def run():
        try:
            outcome["response"] = send()
        except BaseException as error:
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"{what}: no answer after {bound} s: the request hangs"
    if "error" in outcome:
        raise outcome["error"]
    assert elapsed < bound, f"{what}: the answer took {elapsed:.2f} s, the bound is {bound} s"
    return outcome["response"]


def assert_unavailable(response, what):
    """A 503 problem document with ``Retry-After`` that shows the client nothing internal.

    ``response``: WebTest's or a real server's ``Reply``. Returns the problem document.
    """
    text = response.body.decode()
    assert status_of(response) == 503, f"{what}: {status_of(response)} {text}"
    problem = assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0, what
    for internal in INTERNALS:
        assert internal not in text, f"{what} shows {internal!r}: {text}"
    return problem


def fill_pool(engine):
    """Open as many connections as the pool keeps, all at once, and return them to it."""
    with ExitStack() as stack:
        for _ in range(engine.pool.size()):
            stack.enter_context(engine.connect())
    assert engine.pool.checkedin() == engine.pool.size()
