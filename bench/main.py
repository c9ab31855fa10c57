"""make bench (python -m bench): is myservice fast? Side by side with a bare baseline.

1. Setup: wrk (apt-get when missing), the benchmark's own database (created when missing,
   ``alembic upgrade head``, 1,000,000 users seeded once and reused), a fresh cursor secret
   and a fresh API token (``read`` and ``write``) that every request sends, deleted at the end.
2. Served: myservice (production.ini as shipped), the baseline (``bench/baseline.py`` on the
   same ``[server:main]``, on stock waitress and on ``egg:myservice``, the spin removed) and the
   peers (``bench/peers/``: the Pyramid cookiecutter pattern on waitress, FastAPI on uvicorn)
   run side by side; wrk -t4 -c16 drives GET one user, POST a user, GET a page of 50 and GET
   the page after id N-50 (not the peers, which page by offset), alternating the servers over
   several rounds (``bench/served.py``).
3. Memory: GET one user on myservice until 100,000 requests were served, RSS before and after.
4. Writing many users: one POST /users/bulk of 1000 users against 1000 single POSTs on the
   myservice server, then ``myservice-import`` of a CSV file in a subprocess (``bench/bulk.py``).
   The change feed: POST /users with and without it, and a poll at its head on a feed of
   1,000 and of 1,000,000 changes (``bench/feed.py``). Authentication and the access line: GET
   one user with and without each (``bench/auth.py``, ``bench/access.py``). The comparisons:
   ``bench/compare.py``.
5. In process: CPU per request of myservice with and without authentication and of the
   baseline, without a server (``bench/inprocess.py``).
6. Reads on a replica, where the PostgreSQL server binaries are: GET one user with reads on a
   streaming replica against reads on the primary, and the primary's CPU (``bench/replicas.py``).
7. Report: a table on stdout, ``bench/results/<time>.json``, and docs/performance.md between
   its markers. The users the run created are deleted at the end.

Exit status: 0, 1 when any request got an unexpected answer or a socket error or the import
failed, 2 when the setup (or wrk) failed.
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

from bench import bulk, compare, database, feed, inprocess, replicas, report, served
from bench.peers.serve import running_peer
from bench.server import migrate
from bench.variants import baseline_editor, processes_editor, start_order, variants
from bench.wrk import ensure_wrk
from tests.support.processes import SetupError as BenchError
from tests.support.processes import free_port, write_ini
from tests.support.processes import serving as running_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]

FULL = {"rounds": 3, "seconds": 8, "memory_requests": 100_000, "calls": 1000, "repetitions": 5,
        "bulk_repetitions": 5, "import_users": 20_000}  # fmt: skip
QUICK = {"rounds": 2, "seconds": 3, "memory_requests": 10_000, "calls": 200, "repetitions": 3,
         "bulk_repetitions": 3, "import_users": 10_000}  # fmt: skip
#: The longest the memory run may take, whatever the server's rate.
MEMORY_MAX_SECONDS = {False: 300, True: 40}


def progress(message):
    print(f"... {message}", file=sys.stderr, flush=True)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for development")
    parser.add_argument("--rounds", type=int, help="rounds per server and request (3; quick 2)")
    parser.add_argument("--seconds", type=int, help="seconds of each wrk run (8; quick 3)")
    parser.add_argument("--memory-requests", type=int, help="requests of the memory run (100k)")
    parser.add_argument("--calls", type=int, help="in-process calls per repetition (1000)")
    parser.add_argument("--repetitions", type=int, help="in-process repetitions (5)")
    parser.add_argument("--bulk-repetitions", type=int, help="bulk against single POSTs (5)")
    parser.add_argument("--import-users", type=int, help="users myservice-import loads (20k)")
    parser.add_argument("--users", type=int, default=1_000_000, help="seeded users (1,000,000)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="the PostgreSQL server, without a database name ($BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--database", default="myservice_bench", help="its database (created)")
    parser.add_argument("--ini", type=Path, default=PROJECT_ROOT / "production.ini")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md")
    options = parser.parse_args(argv)
    for name, value in (QUICK if options.quick else FULL).items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    return options


def main(argv=None):
    options = parse_arguments(argv)
    started = time.monotonic()
    notes = []
    try:
        with tempfile.TemporaryDirectory(prefix="myservice-bench-") as directory:
            run = benchmark(options, Path(directory), notes)
    except BenchError as error:
        print(f"make bench: {error}", file=sys.stderr)
        return 2
    lines = report.tables(run)
    print("\n".join(lines))
    path = report.write_json(run, PROJECT_ROOT / "bench" / "results")
    if not options.no_docs:
        report.write_doc(lines, PROJECT_ROOT / "docs" / "performance.md")
    print(f"\nraw results: {path.relative_to(PROJECT_ROOT)}; {time.monotonic() - started:.0f} s")
    return 1 if run["failed"] else 0


def benchmark(options, directory, notes):
    load_at_start = os.getloadavg()[0]
    wrk_path = ensure_wrk(progress)
    root = options.postgres.rstrip("/")
    version = database.ensure_database(f"{root}/postgres", options.database)
    url = f"{root}/{options.database}"
    secret = secrets.token_urlsafe(32)
    os.environ.update(
        DATABASE_URL=database.alchemy_url(url),
        MYSERVICE_SECRET=secret,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    progress(f"database {options.database}: alembic upgrade head")
    migrate(write_ini(options.ini, directory, free_port(), name="migrate.ini"), dict(os.environ))
    seconds = database.seed(url, options.users, progress)
    if seconds:
        notes.append(f"seeded {options.users:,} users in {seconds:.0f} s")
    database.trim(url, options.users)
    try:
        with database.token(url) as token:
            run = measure(options, directory, notes, wrk_path, url, secret, token)
        return run | {"machine": report.machine(version, PROJECT_ROOT, load_at_start)}
    finally:
        removed = database.trim(url, options.users)
        progress(f"deleted the {removed:,} users this run created")


def start_servers(stack, options, directory, found, secret):
    """Start every variant's servers in ``start_order`` (stopped when ``stack`` closes): wrk
    targets, and the pid of each variant's first server.

    The peers page by offset, as their guides do, so they are not driven on the deep page."""
    after = options.users - 50
    deep = {
        "myservice": f"/users?limit=50&cursor={quote(database.deep_cursor(secret, after))}",
        "baseline": f"/users?limit=50&after={after}",
        "peer": None,
    }
    targets, pids = [], {}
    for number, variant in enumerate(start_order(found)):
        port = free_port()
        progress(f"starting {variant.description} on port {port}")
        place = directory / f"{number}-{variant.key}"  # its ini file and log
        place.mkdir()
        if variant.app == "peer":
            url = os.environ["DATABASE_URL"]
            server = stack.enter_context(running_peer(variant.key, place, port, url, 60))
        else:
            edit = None
            if variant.baseline_server:
                edit = baseline_editor(variant.baseline_server)
            elif variant.processes:
                edit = processes_editor(variant.processes)
            ini = write_ini(options.ini, place, port, name=f"{variant.key}.ini", edit=edit)
            server = stack.enter_context(running_server(ini, dict(os.environ), port, 60))
        pids.setdefault(variant.key, server.pid)
        targets.append(served.Target(variant.key, f"http://127.0.0.1:{port}", deep[variant.app]))
    return targets, pids


def measure(options, directory, notes, wrk_path, url, secret, token):
    found = variants()
    driver = served.Driver(wrk_path, directory, options.users, token)
    with ExitStack() as stack:
        targets, pids = start_servers(stack, options, directory, found, secret)
        results = driver.rounds(targets, options.rounds, options.seconds, progress)
        summaries = {
            key: {scenario: report.summary(runs) for scenario, runs in by_scenario.items() if runs}
            for key, by_scenario in results.items()
        }
        memory = driver.memory(
            targets[0],
            pids["myservice"],
            options.memory_requests,
            summaries["myservice"]["get"]["rps"],
            MEMORY_MAX_SECONDS[options.quick],
            progress,
        )
        writes = bulk.served(
            targets[0].base_url, token, driver.run_id, options.bulk_repetitions, progress
        )
        shared = (options.ini, directory, driver, options.rounds, options.seconds)
        comparisons = {
            comparison.key: compare.served(comparison, *shared, progress)
            for comparison in report.COMPARISONS
        }
    importer = bulk.imported(options.ini, directory, driver.run_id, options.import_users, progress)
    feed_polls = feed.polls(options, directory, url.rpartition("/")[0], progress)
    timings = inprocess.run(
        options.ini, url, options.users, options.calls, options.repetitions, token, progress
    )
    replica_reads = replicas.measure(
        options.ini, directory, wrk_path, options.rounds, options.seconds, progress
    )
    failed = describe_failures(summaries, memory, timings, writes, importer, comparisons, notes)
    if any(side.errors for side in replica_reads.get("sides", {}).values()):
        notes.append("FAILED: unexpected answers or socket errors: reads on a replica")
        failed = True
    return {
        "mode": "quick" if options.quick else "full",
        "users": options.users,
        "rounds": options.rounds,
        "seconds": options.seconds,
        "calls": options.calls,
        "repetitions": options.repetitions,
        "variants": found,
        "results": results,
        "summaries": summaries,
        "memory": memory,
        "timings": timings,
        "writes": writes,
        "importer": importer,
        "comparisons": comparisons,
        "feed_polls": feed_polls,
        "replicas": replica_reads,
        "targets": report.target_rows(
            summaries, found, timings, memory, writes, feed_polls, comparisons
        ),
        "notes": notes,
        "failed": failed,
    }


def describe_failures(summaries, memory, timings, writes, importer, comparisons, notes):
    """Notes for every unexpected answer; whether there was any."""
    failures = [
        f"{count} unexpected answers or socket errors: {key} {scenario}"
        for key, by_scenario in summaries.items()
        for scenario, row in by_scenario.items()
        if (count := row["errors"])
    ]
    if memory.errors:
        failures.append(f"memory run errors: {memory.errors}")
    failures.extend(
        f"in process {name} {kind}: unexpected statuses {timing.unexpected}"
        for kind, pair in timings.items()
        for name, timing in pair.items()
        if timing.unexpected
    )
    if writes.unexpected:
        failures.append(f"bulk against single POSTs: unexpected statuses {writes.unexpected}")
    if importer.status != 0 or importer.created != importer.users:
        failures.append(
            f"myservice-import exited {importer.status}, created {importer.created:,} of "
            f"{importer.users:,}: {importer.last_error}"
        )
    failures.extend(
        f"{outcome.errors} unexpected answers or socket errors: comparison with {key}"
        for key, outcome in comparisons.items()
        if outcome.errors
    )
    notes.extend(f"FAILED: {failure}" for failure in failures)
    return bool(failures)
