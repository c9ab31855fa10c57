"""Writing many users: one POST /users/bulk against single POSTs, and myservice-import.

Served: one keep-alive ``http.client`` connection to the myservice server (real HTTP, as a
client pays it, with the run's bearer token) sends 1000 new users as one ``POST /users/bulk``,
then 1000 other new users as 1000 ``POST /users`` one after the other. Bodies are encoded
beforehand, every answer is read whole and must be 201; wall time per user, median over a few
repetitions after a warm-up.
One request at a time: a per-user cost comparison, not a throughput run.

Importer: ``myservice-import INI FILE --batch 1000`` in a subprocess on a CSV file of new
users, against the bench's database (``DATABASE_URL``); users/s from the seconds of its
summary line (interpreter start, imports and engine set-up left out) and its wall time.
"""

import csv
import http.client
import json
import re
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.processes import SetupError as BenchError
from tests.support.processes import venv_command

#: Users in one POST /users/bulk (production.ini's myservice.max_bulk) and per import batch.
BATCH = 1000
SUMMARY = re.compile(r"read (\d+), created (\d+), skipped \d+, rejected \d+, seconds ([\d.]+)")


@dataclass
class Writes:
    users: int  # each way, per repetition
    bulk_ms: float  # per user, median over the repetitions
    single_ms: float
    speedup: float  # single_ms / bulk_ms
    repetitions: list  # (bulk ms, single ms) per user, each repetition
    unexpected: dict  # status -> count, for answers that were not 201


@dataclass
class Import:
    users: int
    created: int
    seconds: float  # from its summary line
    wall_seconds: float  # of the whole subprocess
    users_per_second: float  # created / seconds
    status: int
    last_error: str  # the last line it wrote to stderr when it failed


def new_users(prefix, count):
    return [
        {"username": f"{prefix}n{n}", "email": f"{prefix}n{n}@example.com", "full_name": "Bulk"}
        for n in range(count)
    ]


def post_all(connection, path, bodies, headers, statuses):
    """Seconds for POSTing each body in turn on ``connection``, each answer read whole."""
    started = time.perf_counter()
    for body in bodies:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1
    return time.perf_counter() - started


def served(base_url, token, run_id, repetitions, progress):
    """The Writes of ``repetitions`` x (one bulk of BATCH users, BATCH single POSTs)."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    statuses = Counter()

    def post(path, bodies):
        return post_all(connection, path, bodies, headers, statuses)

    def each_way(tag, count):
        bulk = [json.dumps({"users": new_users(f"b{run_id}{tag}", count)}).encode()]
        return bulk, [json.dumps(user).encode() for user in new_users(f"s{run_id}{tag}", count)]

    runs = []
    try:
        bulk, singles = each_way("w", BATCH)
        post("/users/bulk", bulk)  # warm-up
        post("/users", singles[:50])
        for repetition in range(repetitions):
            progress(f"bulk: {repetition + 1}/{repetitions}, {BATCH} users each way")
            bulk, singles = each_way(f"r{repetition}", BATCH)
            bulk_s = post("/users/bulk", bulk)
            single_s = post("/users", singles)
            runs.append((bulk_s * 1000 / BATCH, single_s * 1000 / BATCH))
    finally:
        connection.close()
    del statuses[201]
    bulk_ms = statistics.median(bulk for bulk, _ in runs)
    single_ms = statistics.median(single for _, single in runs)
    return Writes(BATCH, bulk_ms, single_ms, single_ms / bulk_ms, runs, dict(statuses))


def imported(ini, directory, run_id, count, progress):
    """The Import of ``count`` new users from a CSV file by the myservice-import command."""
    path = directory / "import.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["username", "email", "full_name"])
        writer.writerows(user.values() for user in new_users(f"m{run_id}", count))
    progress(f"myservice-import of {count:,} users, --batch {BATCH}")
    command = [venv_command("myservice-import"), str(ini), str(path), "--batch", str(BATCH)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"myservice-import did not finish: {' '.join(command)}") from error
    wall = time.perf_counter() - started
    found = SUMMARY.search(done.stdout)
    created, seconds = (int(found[2]), float(found[3])) if found else (0, float("nan"))
    failed = done.returncode != 0 or created != count
    last_error = (done.stderr.strip().splitlines() or [""])[-1] if failed else ""
    rate = created / seconds if seconds else float("nan")
    return Import(count, created, seconds, wall, rate, done.returncode, last_error)
