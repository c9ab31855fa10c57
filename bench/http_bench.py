"""myservice-bench: throughput, latency and memory of the real server, end to end.

Unit tests prove behaviour; the speed and memory goals of the service are checked here. The
benchmark starts the server the way ``make run`` does: ``pserve`` on a copy of development.ini
(only the listen port changed, ``%(here)s`` kept pointing at the project), over a database
migrated by ``alembic upgrade head``. It talks HTTP/1.1 to it over keep-alive connections, as a
real client would, and measures:

1. seed: ``POST /users`` N times (validation, uniqueness check, INSERT and commit per request).
2. ``GET /users/{id}`` of random users over 1 connection, then over 4 concurrent connections;
   then with ``If-None-Match`` (answered 304), which should cost no more than a 200.
3. ``PATCH /users/{id}`` of random users (row lock and versioned UPDATE), 1 then 4 connections.
4. ``GET /users?limit=50``: the first page against a page deep in the collection. Keyset
   pagination promises the same cost at row 10 and at row N; an OFFSET would make the deep page
   cost more. The cursors are walked first to obtain the deep page's cursor.
5. The RSS of the pserve process (VmRSS in /proc) at start, after seeding, after each phase and
   at the end: once warm, memory must not grow with the number of requests served.

Each phase stops at its request count or its time limit, whichever comes first. The table gives
requests, seconds, requests/s, p50/p99 latency, the server's CPU time per request (whole process,
and its main thread alone) and its RSS. The exit status is 1 when any request got a 5xx or any
other unexpected answer (listed), 2 when the server could not be set up.

1 and 4 connections are always reported side by side. Stock waitress 3.0.2 spins its main loop
when several keep-alive connections are busy: on a 2-core machine a hello-world app served about
6,800 requests/s over 1 connection and 700 over 4. pserve runs that loop on its main thread, so
the loop/req column makes such spinning visible, and a note names it when the multi-connection
throughput collapses. The client runs on the same machine and competes for the same cores: read
absolute numbers as a floor, and compare rows of one run rather than runs on a busy machine.

The default database is a fresh SQLite file in a temporary directory, removed afterwards.
``--database-url`` (or BENCH_DATABASE_URL) benchmarks another database, e.g. PostgreSQL: it is
migrated to head and never dropped; the users are created under a random name prefix and
deleted through the API at the end (a note names the prefix of any that remain).
"""

import argparse
import http.client
import itertools
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench.server import (
    BenchError,
    CpuTimes,
    cpu_times,
    free_port,
    memory_kib,
    migrate,
    running_server,
    write_ini,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Request counts and time limits of a full run and of ``--quick``.
FULL = {
    "users": 2000,
    "reads": 5000,
    "patches": 1000,
    "page_fetches": 300,
    "phase_seconds": 12.0,
    "seed_seconds": 40.0,
}
QUICK = {
    "users": 200,
    "reads": 200,
    "patches": 50,
    "page_fetches": 30,
    "phase_seconds": 5.0,
    "seed_seconds": 15.0,
}

PAGE_SIZE = 50
MAX_WALK_PAGES = 10_000
CLEANUP_SECONDS = 120.0
REQUEST_TIMEOUT = 30.0

#: Multi-connection throughput below this fraction of the single-connection one is "far below".
FAR_BELOW = 0.5
#: A deep page whose p50 is this many times the first page's is not keyset-cheap.
DEEP_PAGE_TOLERANCE = 1.5

ID_IN_PATH = re.compile(r"/\d+")
PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)[^@]*@")


class PhaseDone(Exception):
    """Raised by an operation when its phase has no more work (the last page was read)."""


class Failures:
    """Unexpected answers, counted by phase, method, route and status (thread safe)."""

    def __init__(self):
        self.phase = ""
        self.counts = Counter()
        self.examples = {}
        self.lock = threading.Lock()

    def add(self, method, path, outcome, detail):
        route = ID_IN_PATH.sub("/{id}", path.partition("?")[0])
        key = (self.phase, method, route, outcome)
        with self.lock:
            self.counts[key] += 1
            self.examples.setdefault(key, detail)

    def __bool__(self):
        return bool(self.counts)

    def lines(self):
        for key, count in self.counts.items():
            phase, method, route, outcome = key
            yield f"  {count} x {method} {route} -> {outcome} in '{phase}': {self.examples[key]}"


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP/1.1 connection. Unexpected answers are recorded, not raised."""

    def __init__(self, port, failures):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.failures = failures
        self.connects = 0

    def connect(self):
        self.connection.connect()
        self.connects += 1

    def call(
        self, method, path, body=None, expect=200, content_type="application/json", headers=None
    ):
        """The reply when its status is ``expect``, else None (and the failure is recorded)."""
        headers = dict(headers or {})
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.connection.sock is None:  # the server closed the previous one
            self.connects += 1
        try:
            self.connection.request(method, path, body, headers)
            response = self.connection.getresponse()
            reply = Reply(response.status, response.read())
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            self.failures.add(method, path, type(error).__name__, str(error))
            return None
        if reply.status != expect:
            detail = reply.body[:300].decode(errors="replace")
            self.failures.add(method, path, reply.status, f"(expected {expect}) {detail}")
            return None
        return reply

    def close(self):
        self.connection.close()


# -- phases --------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    connections: int
    latencies: list
    seconds: float
    cpu: CpuTimes | None
    connects: int
    cut_short: bool
    memory: dict = field(default_factory=dict)  # VmRSS and VmHWM (KiB) when the phase ended

    @property
    def requests(self):
        return len(self.latencies)

    @property
    def rate(self):
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, percent):
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[percent - 1] * 1000

    def cpu_ms_per_request(self, part):
        """Server CPU ms per request: of the whole ``"process"`` or of its ``"main_thread"``."""
        if self.cpu is None or not self.requests:
            return None
        return getattr(self.cpu, part) * 1000 / self.requests


def run_phase(name, operation, *, count, seconds, connections, server, failures):
    """Call ``operation(client, index)`` ``count`` times over ``connections`` connections.

    Stops early at the ``seconds`` time limit or when an operation raises PhaseDone.
    """
    progress(f"{name}, {connections} connection(s): up to {count} requests or {seconds:g}s")
    failures.phase = f"{name} x{connections}"
    clients = [Client(server.port, failures) for _ in range(connections)]
    for client in clients:
        client.connect()
    indices, lock, done, latencies = itertools.count(), threading.Lock(), threading.Event(), []
    deadline = time.perf_counter() + seconds

    def work(client):
        while not done.is_set():
            with lock:
                index = next(indices)
            if index >= count or time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                operation(client, index)
            except PhaseDone:
                done.set()
            latencies.append(time.perf_counter() - started)

    cpu_before = cpu_times(server.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(work, clients))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_times(server.pid)
    for client in clients:
        client.close()
    return PhaseResult(
        name=name,
        connections=connections,
        latencies=latencies,
        seconds=elapsed,
        cpu=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        connects=sum(client.connects for client in clients),
        cut_short=not done.is_set() and len(latencies) < count,
    )


def create_user_operation(prefix, ids):
    def create_user(client, index):
        name = f"{prefix}-{index:06d}"
        user = {"username": name, "email": f"{name}@example.com", "full_name": f"Bench {index}"}
        reply = client.call("POST", "/users", user, expect=201)
        if reply is not None:
            ids.append(reply.json()["id"])

    return create_user


def read_user_operation(ids):
    def read_user(client, index):
        client.call("GET", f"/users/{random.choice(ids)}")

    return read_user


def conditional_read_operation(ids, etag):
    def read_unchanged_user(client, index):
        path = f"/users/{random.choice(ids)}"
        client.call("GET", path, expect=304, headers={"If-None-Match": etag})

    return read_unchanged_user


def patch_user_operation(ids):
    def patch_user(client, index):
        change = {"full_name": f"Patched {index}"}
        path = f"/users/{random.choice(ids)}"
        client.call("PATCH", path, change, content_type="application/merge-patch+json")

    return patch_user


def delete_user_operation(ids, deleted):
    def delete_user(client, index):
        if client.call("DELETE", f"/users/{ids[index]}", expect=204) is not None:
            deleted.append(ids[index])

    return delete_user


def page_path(cursor=None):
    query = {"limit": PAGE_SIZE}
    if cursor is not None:
        query["cursor"] = cursor
    return f"/users?{urlencode(query)}"


@dataclass
class Walk:
    """The pages seen while following ``next_cursor``: (cursor that fetched it, item count)."""

    cursor: str | None = None
    pages: list = field(default_factory=list)

    def deepest_full_page(self):
        """(page number, cursor) of the last page with PAGE_SIZE items, other than page 1."""
        for number, (cursor, items) in reversed(list(enumerate(self.pages, start=1))):
            if number > 1 and items == PAGE_SIZE:
                return number, cursor
        return None


def walk_pages_operation(walk):
    def next_page(client, index):
        reply = client.call("GET", page_path(walk.cursor))
        if reply is None:
            raise PhaseDone
        page = reply.json()
        walk.pages.append((walk.cursor, len(page["items"])))
        walk.cursor = page["next_cursor"]
        if walk.cursor is None:
            raise PhaseDone

    return next_page


def fetch_operation(path):
    def fetch(client, index):
        client.call("GET", path)

    return fetch


# -- the run -------------------------------------------------------------------------------


class Bench:
    """The phases, run in order against one server; results gathered for the report."""

    def __init__(self, server, options, failures):
        self.server = server
        self.options = options
        self.failures = failures
        self.prefix = f"bench{secrets.token_hex(3)}"
        self.ids = []
        self.results = []
        self.rss_at_start = memory_kib(server.pid).get("VmRSS")
        self.warm = None  # (RSS KiB, requests served) once seeding has warmed the server up
        self.notes = []

    def phase(self, name, operation, count, *, connections=1, seconds=None):
        result = run_phase(
            name,
            operation,
            count=count,
            seconds=self.options.phase_seconds if seconds is None else seconds,
            connections=connections,
            server=self.server,
            failures=self.failures,
        )
        result.memory = memory_kib(self.server.pid)
        self.results.append(result)
        if result.connects > result.connections:
            self.notes.append(
                f"{name}: {result.connects} connects for {result.connections} keep-alive "
                "connection(s): the server closed them between requests (waitress 3.0.2 closes "
                "after any response without Content-Length, such as 204 and 304)"
            )
        return result

    def run(self):
        seeding = self.seed()
        self.warm = (seeding.memory.get("VmRSS"), seeding.requests)
        if not self.ids:
            self.notes.append("no user was created, so no other phase ran")
            return
        self.side_by_side("GET /users/{id}", read_user_operation(self.ids), self.options.reads)
        self.conditional_reads()
        self.side_by_side("PATCH /users/{id}", patch_user_operation(self.ids), self.options.patches)
        self.pagination()

    def seed(self):
        operation = create_user_operation(self.prefix, self.ids)
        count, seconds = self.options.users, self.options.seed_seconds
        return self.phase("seed POST /users", operation, count, seconds=seconds)

    def side_by_side(self, name, operation, count):
        single = self.phase(name, operation, count)
        multi = self.phase(name, operation, count, connections=self.options.connections)
        if multi.rate < FAR_BELOW * single.rate:
            self.notes.append(
                f"{name}: {multi.connections} connections served {multi.rate:.0f} req/s against "
                f"{single.rate:.0f} over 1 ({multi.rate / single.rate:.2f}x); likely cause: "
                "stock waitress 3.0.2 spins its main loop while several keep-alive connections "
                "are busy (compare the loop/req column)"
            )

    def conditional_reads(self):
        """GET with If-None-Match: 304s. Runs before any PATCH, while every user is at version 1."""
        operation = conditional_read_operation(self.ids, '"1"')
        self.phase("GET /users/{id} -> 304", operation, self.options.reads // 5)

    def pagination(self):
        walk = Walk()
        self.phase("list: walk all pages", walk_pages_operation(walk), MAX_WALK_PAGES)
        deepest = walk.deepest_full_page()
        if deepest is None:
            self.notes.append("too few users for a deep page: pagination cost not compared")
            return
        number, cursor = deepest
        count = self.options.page_fetches
        first = self.phase("list: page 1 (rows 1-50)", fetch_operation(page_path()), count)
        rows = f"rows {(number - 1) * PAGE_SIZE + 1}-{number * PAGE_SIZE}"
        deep = self.phase(
            f"list: page {number} ({rows})", fetch_operation(page_path(cursor)), count
        )
        self.compare_pages(first, deep)

    def compare_pages(self, first, deep):
        ratio = deep.percentile_ms(50) / first.percentile_ms(50)
        verdict = (
            "same cost, as keyset pagination promises"
            if ratio <= DEEP_PAGE_TOLERANCE
            else "the deep page costs more: is the query scanning (OFFSET)?"
        )
        self.notes.append(
            f"{deep.name} p50 {deep.percentile_ms(50):.2f} ms vs page 1 "
            f"p50 {first.percentile_ms(50):.2f} ms ({ratio:.2f}x): {verdict}"
        )

    def cleanup(self):
        """Delete the users this run created (on a database that outlives the run)."""
        if not self.ids:
            return
        deleted = []
        operation = delete_user_operation(list(self.ids), deleted)
        self.phase("cleanup DELETE /users/{id}", operation, len(self.ids), seconds=CLEANUP_SECONDS)
        left = len(self.ids) - len(deleted)
        if left:
            self.notes.append(
                f"{left} users of this run remain: usernames '{self.prefix}-*' "
                f"(SQL: DELETE FROM users WHERE username LIKE '{self.prefix}-%')"
            )


# -- the report ----------------------------------------------------------------------------

COLUMNS = (
    f"{'phase':<30} {'conns':>5} {'reqs':>6} {'secs':>6} {'req/s':>6} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'cpu/req':>7} {'loop/req':>8} {'RSS MiB':>7}"
)
LEGEND = (
    "cpu/req: server CPU ms per request, all threads; loop/req: the part spent by its main\n"
    "thread (waitress's event loop); RSS MiB: the server's RSS when the phase ended (a step when\n"
    "more pooled connections come into use is expected; growth phase after phase is a leak)"
)


def table_row(result):
    mark = "*" if result.cut_short else " "
    rss = result.memory.get("VmRSS")
    return (
        f"{result.name:<30} {result.connections:>5} {result.requests:>6}{mark}"
        f"{result.seconds:>6.2f} {result.rate:>6.0f} {result.percentile_ms(50):>7.2f} "
        f"{result.percentile_ms(99):>7.2f} {optional(result.cpu_ms_per_request('process')):>7} "
        f"{optional(result.cpu_ms_per_request('main_thread')):>8} "
        f"{'n/a' if rss is None else f'{rss / 1024:.1f}':>7}"
    )


def optional(value, spec=".2f"):
    return "n/a" if value is None else format(value, spec)


def print_report(bench, failures, elapsed):
    print(COLUMNS)
    print("-" * len(COLUMNS))
    for result in bench.results:
        print(table_row(result))
    if any(result.cut_short for result in bench.results):
        print("* stopped at the phase's time limit before its request count")
    print(LEGEND)
    print()
    for line in memory_lines(bench):
        print(line)
    for note in bench.notes:
        print(f"note: {note}")
    if failures:
        print(f"FAILED: {sum(failures.counts.values())} unexpected answers:")
        for line in failures.lines():
            print(line)
    print(f"total {elapsed:.1f} s")


def memory_lines(bench):
    """RSS at start, once warm and at the end, and the growth per request once warm."""
    end = bench.results[-1].memory if bench.results else {}
    warm_rss, warm_requests = bench.warm or (None, 0)
    if None in (bench.rss_at_start, warm_rss) or "VmRSS" not in end:
        return ["RSS: not available (no /proc, or the server is gone)"]
    served = sum(result.requests for result in bench.results) - warm_requests
    lines = [
        f"RSS of pserve (pid {bench.server.pid}): {mib(bench.rss_at_start)} at start, "
        f"{mib(warm_rss)} after seeding, {mib(end['VmRSS'])} at the end, "
        f"peak {mib(end.get('VmHWM', 0))}"
    ]
    if served:
        growth = end["VmRSS"] - warm_rss
        lines.append(
            f"RSS growth after seeding: {growth / 1024:+.1f} MiB over {served} requests "
            f"({growth * 1024 / served:+.0f} bytes/request)"
        )
    return lines


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def describe(options, server):
    database = options.database_url or "SQLite file in a temporary directory"
    database = PASSWORD_IN_URL.sub(r"\1***@", database)
    return (
        f"myservice-bench: pserve pid {server.pid} on 127.0.0.1:{server.port}, "
        f"database {database}, {os.cpu_count()} CPUs"
    )


def progress(message):
    print(f"... {message}", file=sys.stderr, flush=True)


# -- command line --------------------------------------------------------------------------


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="myservice-bench",
        description="Throughput, latency and memory of a real myservice server.",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke checks")
    parser.add_argument("--users", type=int, help="users to create (2000; quick: 200)")
    parser.add_argument("--reads", type=int, help="GETs per connection count (5000); 304s: a fifth")
    parser.add_argument("--patches", type=int, help="PATCHes per connection count (1000)")
    parser.add_argument("--page-fetches", type=int, help="fetches of each list page (300)")
    parser.add_argument("--phase-seconds", type=float, help="time limit of each phase (12)")
    parser.add_argument("--seed-seconds", type=float, help="time limit of seeding (40)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections (4)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="benchmark this database (migrated, never dropped) instead of a fresh SQLite file; "
        "default: $BENCH_DATABASE_URL",
    )
    parser.add_argument(
        "--ini",
        type=Path,
        default=PROJECT_ROOT / "development.ini",
        help="the ini file to copy (default: development.ini)",
    )
    parser.add_argument("--startup-seconds", type=float, default=30.0, help="wait for /health")
    options = parser.parse_args(argv)
    for name, value in (QUICK if options.quick else FULL).items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    return options


def main(argv=None):
    options = parse_arguments(argv)
    started = time.perf_counter()
    failures = Failures()
    try:
        with tempfile.TemporaryDirectory(prefix="myservice-bench-") as directory:
            bench = benchmark(options, Path(directory), failures)
    except BenchError as error:
        print(f"myservice-bench: {error}", file=sys.stderr)
        return 2
    print_report(bench, failures, time.perf_counter() - started)
    return 1 if failures else 0


def benchmark(options, directory, failures):
    """Migrate, serve, run every phase (and clean up an outside database), stop the server."""
    url = options.database_url or f"sqlite:///{directory / 'bench.sqlite'}"
    env = {**os.environ, "DATABASE_URL": url}
    port = free_port()
    ini = write_ini(options.ini, directory, port)
    progress("alembic upgrade head")
    migrate(ini, env)
    with running_server(ini, env, port, options.startup_seconds) as server:
        print(describe(options, server), flush=True)
        bench = Bench(server, options, failures)
        try:
            bench.run()
        finally:
            if options.database_url:
                bench.cleanup()
    return bench


if __name__ == "__main__":
    sys.exit(main())
