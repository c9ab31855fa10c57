"""Reads on a replica: GET one user's throughput, and what the primary spends on it, with reads
served by a streaming replica against reads served by the primary.

Optional: it runs where the PostgreSQL server binaries are (``tests.support.replicas`` builds a
primary and a hot standby on free ports, ``USERS`` users seeded on the primary and replayed
by the standby); elsewhere it returns the reason it did not. Two ``pserve production.ini`` on
the pair, one with ``DATABASE_REPLICA_URLS`` naming the standby and one without; wrk drives
GET one user on both, A B A B, after a warm-up. The primary's CPU is the user + system time of
its postmaster's children (its backends, from /proc) during each run, per 1000 requests. Both
servers share the machine with both databases, so the throughput is the service's; what a
replica buys is the primary's CPU, which is what a busy primary runs out of.

Alone: ``python -m bench.replicas [--quick]`` prints the table.
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import database, served
from bench.wrk import ensure_wrk
from tests.support.database import migrate
from tests.support.processes import free_port, write_ini
from tests.support.processes import serving as running_server
from tests.support.replicas import PostgresBinariesMissing, running_pair

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Users seeded on the pair (GET one user picks one of them at random).
USERS = 10_000

#: The two servers: reads on the standby, reads on the primary.
SIDES = ("replica", "primary")


@dataclass
class Side:
    rps: list = field(default_factory=list)  # per round
    primary_cpu_ms_per_1k: list = field(default_factory=list)  # per round
    errors: int = 0

    def medians(self):
        return statistics.median(self.rps), statistics.median(self.primary_cpu_ms_per_1k)


def clock_ticks():
    return os.sysconf("SC_CLK_TCK")


def backends_cpu_seconds(postmaster_pid):
    """User + system seconds of the postmaster's child processes so far (they live as long as
    the service's pooled connections do, so a run's difference is what they spent in it)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == postmaster_pid:  # fields after "(comm)": state, ppid, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / clock_ticks()


def postmaster_pid(server):
    return int((server.directory / "postmaster.pid").read_text().split()[0])


def measure(ini, directory, wrk_path, rounds, seconds, progress):
    """{"sides": {side: Side}} or {"skipped": why}."""
    try:
        with running_pair() as pair:
            return {"sides": measure_on(pair, ini, directory, wrk_path, rounds, seconds, progress)}
    except PostgresBinariesMissing as reason:
        return {"skipped": str(reason)}


def measure_on(pair, ini, directory, wrk_path, rounds, seconds, progress):
    primary_url = pair.primary.url()
    libpq_url = primary_url.replace("postgresql+psycopg://", "postgresql://", 1)
    progress("replicas: a primary and a standby built; alembic upgrade head, seeding")
    migrate(primary_url, "upgrade", "head")
    database.seed(libpq_url, USERS, progress)
    pair.caught_up()
    env = {**os.environ, "DATABASE_URL": primary_url}
    env.setdefault("MYSERVICE_SECRET", secrets.token_urlsafe(32))
    environments = {
        "replica": {**env, "DATABASE_REPLICA_URLS": pair.standby.url()},
        "primary": {key: value for key, value in env.items() if key != "DATABASE_REPLICA_URLS"},
    }
    pid = postmaster_pid(pair.primary)
    sides = {side: Side() for side in SIDES}
    with database.token(libpq_url) as token, ExitStack() as stack:
        driver = served.Driver(wrk_path, directory, USERS, token)
        targets = {}
        for side in SIDES:
            port = free_port()
            path = write_ini(ini, directory, port, name=f"replicas-{side}.ini")
            stack.enter_context(running_server(path, environments[side], port, 60))
            targets[side] = served.Target(side, f"http://127.0.0.1:{port}", None)
        for number in range(rounds + 1):
            progress(f"replicas: round {number}/{rounds}" if number else "replicas: warm-up")
            for side in SIDES:
                before = backends_cpu_seconds(pid)
                result = driver.once(targets[side], "get", seconds if number else 1)
                spent = backends_cpu_seconds(pid) - before
                if number:
                    sides[side].rps.append(result.rps)
                    per_1k = spent * 1000 / result.requests * 1000 if result.requests else 0.0
                    sides[side].primary_cpu_ms_per_1k.append(per_1k)
                    sides[side].errors += result.error_count
    return sides


def lines(outcome, rounds, seconds):
    """The report's lines: a table, or why there is none."""
    if "skipped" in outcome:
        return [f"Reads on a replica: not measured ({outcome['skipped']})."]
    sides = outcome["sides"]
    text = [
        f"Reads on a replica: GET one user of {USERS:,} over wrk -t4 -c16, {rounds} round(s) of "
        f"{seconds} s after a warm-up, alternating; a primary and a hot standby on this machine "
        "(initdb, pg_basebackup -R); the primary's CPU is its backends' user + system time.",
        "",
        "| reads served by | req/s | primary CPU ms per 1000 requests | errors |",
        "|---|--:|--:|--:|",
    ]
    for side in SIDES:
        rps, cpu = sides[side].medians()
        text.append(f"| the {side} | {rps:,.0f} | {cpu:,.1f} | {sides[side].errors} |")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s (else 3 of 8)")
    options = parser.parse_args(argv)
    rounds, seconds = (2, 3) if options.quick else (3, 8)
    ini = PROJECT_ROOT / "production.ini"

    def progress(message):
        print(f"... {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="myservice-bench-") as directory:
        outcome = measure(ini, Path(directory), ensure_wrk(progress), rounds, seconds, progress)
    print("\n".join(lines(outcome, rounds, seconds)))
    failed = any(side.errors for side in outcome.get("sides", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
