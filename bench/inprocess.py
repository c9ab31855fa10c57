"""In process: the CPU each app spends on a request, with no HTTP server in the way.

The WSGI apps are built in this process (myservice from production.ini, its logging to
/dev/null; the same without authentication, ``bench.auth.noauth_app``; the baseline over its
own small pool), the environs of every call are prepared beforehand, each with the run's
bearer token, and ``time.process_time()`` (this process's CPU, all threads) and wall time are
taken over N calls of ``app(environ, start_response)`` that consume the body. After a warm-up
of each, the apps take turns in each repetition; the result is the median of the
repetitions. PostgreSQL's own CPU is not counted.
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

from bench.auth import COMPARISON, noauth_app
from bench.baseline import make_app, open_pool

#: The requests timed in process, and the status each must get.
REQUESTS = {"get": "200", "post": "201", "page": "200"}

#: myservice without authentication's name in the timings (as its server's in ``bench.auth``).
NOAUTH = COMPARISON.key


@dataclass
class Timing:
    cpu_ms: float  # median over the repetitions, per request
    wall_ms: float
    repetitions: list  # (cpu ms, wall ms) per request, each repetition
    unexpected: dict  # status -> count, for answers that were not the expected one


def myservice_app(ini, factory=None):
    """myservice as production.ini builds it (or ``factory`` from production.ini's settings),
    its log lines written to /dev/null."""
    from pyramid.paster import get_app, get_appsettings, setup_logging

    setup_logging(str(ini))
    sink = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    if factory is None:
        return get_app(str(ini), "main")
    return factory({}, **get_appsettings(str(ini), "main"))


def baseline_app(url):
    return make_app(open_pool(url, 2))


def environs(kind, count, users, tag, token):
    """``count`` fresh WSGI environs for request ``kind`` (bodies not yet read), each with
    the bearer ``token``."""
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
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
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


def measure(apps, kind, calls, repetitions, users, token):
    """{name: Timing} of ``calls`` requests of ``kind`` to each of ``apps`` ({name: app}),
    ``repetitions`` times after a warm-up of each, the apps taking turns in each repetition."""
    expected = REQUESTS[kind]
    unexpected = {name: Counter() for name in apps}
    runs = {name: [] for name in apps}
    for repetition in range(repetitions + 1):  # the first is the warm-up
        count = calls if repetition else max(calls // 5, 20)
        for index, (name, app) in enumerate(apps.items()):
            prepared = environs(kind, count, users, f"a{index}r{repetition}", token)
            cpu, wall, odd = call_all(app, prepared, expected)
            unexpected[name].update(odd)
            if repetition:
                runs[name].append((cpu * 1000 / count, wall * 1000 / count))
    return {
        name: Timing(
            cpu_ms=statistics.median(cpu for cpu, _ in runs[name]),
            wall_ms=statistics.median(wall for _, wall in runs[name]),
            repetitions=runs[name],
            unexpected=dict(unexpected[name]),
        )
        for name in apps
    }


def run(ini, url, users, calls, repetitions, token, progress):
    """{request kind: {"myservice": Timing, "baseline": Timing, NOAUTH: Timing}}."""
    apps = {
        "myservice": myservice_app(ini),
        NOAUTH: myservice_app(ini, noauth_app),
        "baseline": baseline_app(url),
    }
    timings = {}
    for kind in REQUESTS:
        progress(f"in process: {kind}, {repetitions} x {calls} calls of each app, taking turns")
        timings[kind] = measure(apps, kind, calls, repetitions, users, token)
    return timings
