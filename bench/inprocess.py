"""In process: the CPU each app spends on a request, with no HTTP server in the way.

Both WSGI apps are built in this process (myservice from production.ini, its logging to
/dev/null; the baseline over its own small pool), the environs of every call are prepared
beforehand, and ``time.process_time()`` (this process's CPU, all threads) and wall time are
taken over N calls of ``app(environ, start_response)`` that consume the body, after a warm-up.
The result is the median of a few repetitions. PostgreSQL's own CPU is not counted.
"""

import io
import logging
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from webob import Request

from bench.baseline import make_app, open_pool

#: The requests timed in process, and the status each must get.
REQUESTS = {"get": "200", "post": "201", "page": "200"}


@dataclass
class Timing:
    cpu_ms: float  # median over the repetitions, per request
    wall_ms: float
    repetitions: list  # (cpu ms, wall ms) per request, each repetition
    unexpected: dict  # status -> count, for answers that were not the expected one


def myservice_app(ini):
    """myservice as production.ini builds it, its log lines written to /dev/null."""
    from pyramid.paster import get_app, setup_logging

    setup_logging(str(ini))
    sink = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    return get_app(str(ini), "main")


def baseline_app(url):
    return make_app(open_pool(url, 2))


def environs(kind, count, users, tag):
    """``count`` fresh WSGI environs for request ``kind`` (bodies not yet read)."""
    pick = random.Random(f"{kind}{count}")
    made = []
    for number in range(count):
        if kind == "get":
            request = Request.blank(f"/users/{pick.randint(1, users)}")
        elif kind == "post":
            name = f"i{tag}n{number}"
            body = f'{{"username":"{name}","email":"{name}@example.com","full_name":"In P"}}'
            request = Request.blank("/users", method="POST", body=body.encode())
            request.content_type = "application/json"
        else:
            request = Request.blank("/users?limit=50")
        environ = request.environ
        environ["wsgi.input"] = io.BytesIO(request.body)
        made.append(environ)
    return made


def call_all(app, prepared, expected):
    """Seconds of CPU and of wall time for calling ``app`` on each environ, and odd statuses."""
    statuses = Counter()

    def start_response(status, headers, exc_info=None):
        statuses[status[:3]] += 1

    cpu, wall = time.process_time(), time.perf_counter()
    for environ in prepared:
        body = app(environ, start_response)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    del statuses[expected]
    return cpu, wall, statuses


def measure(app, name, kind, calls, repetitions, users):
    """The Timing of ``calls`` requests of ``kind``, ``repetitions`` times after a warm-up."""
    expected = REQUESTS[kind]
    unexpected = Counter()
    warm = environs(kind, max(calls // 5, 20), users, f"{name[0]}w")
    unexpected.update(call_all(app, warm, expected)[2])
    runs = []
    for repetition in range(repetitions):
        prepared = environs(kind, calls, users, f"{name[0]}{repetition}")
        cpu, wall, odd = call_all(app, prepared, expected)
        unexpected.update(odd)
        runs.append((cpu * 1000 / calls, wall * 1000 / calls))
    return Timing(
        cpu_ms=statistics.median(cpu for cpu, _ in runs),
        wall_ms=statistics.median(wall for _, wall in runs),
        repetitions=runs,
        unexpected=dict(unexpected),
    )


def run(ini, url, users, calls, repetitions, progress):
    """{request kind: {"myservice": Timing, "baseline": Timing}}."""
    apps = {"myservice": myservice_app(ini), "baseline": baseline_app(url)}
    timings = {}
    for kind in REQUESTS:
        for name, app in apps.items():
            progress(f"in process: {name} {kind}, {repetitions} x {calls} calls")
            timings.setdefault(kind, {})[name] = measure(app, name, kind, calls, repetitions, users)
    return timings
