"""The report: one Markdown table set for stdout and docs/performance.md, and the raw JSON."""

import json
import os
import platform
import re
import statistics
import subprocess
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import access, auth, bulk, feed, replicas
from bench.inprocess import NOAUTH
from bench.served import SCENARIOS
from bench.variants import TWO_PROCESSES_KEY, start_order

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
DOC_HEADING = "# Performance\n\nThe latest `make bench` table (written by the benchmark):\n\n"

#: The targets: myservice's served req/s against each baseline, in-process CPU against the
#: baseline's, the deep page's req/s against the first page's, RSS growth over the long run,
#: the time per user of one POST /users/bulk against single POSTs. What authentication and the
#: access line may cost is each comparison's ``max_cost`` (bench/auth.py, bench/access.py).
SERVED_MIN_RATIO = 0.5
#: myservice's served req/s against each peer's (``bench/peers/``), by request: reads at least
#: 1.5x every peer, a write at least as fast as the cookiecutter pattern.
PEER_MIN_RATIOS = {
    "cookiecutter": {"get": 1.5, "post": 1.0, "page": 1.5},
    "fastapi": {"get": 1.5, "page": 1.5},
}
CPU_MAX_RATIO = 2.5
DEEP_MAX_RATIO = 1.2
RSS_MAX_GROWTH = 0.10
BULK_MIN_SPEEDUP = 10
#: Two server processes against one on a 2-core machine.
TWO_PROCESSES_MIN_GAIN = 1.8
#: What a part costs, each by a server without it (bench/compare.py); those with a
#: ``max_cost`` are targets.
COMPARISONS = (feed.COMPARISON, auth.COMPARISON, access.COMPARISON)


def machine(postgres_version, project_root, load_at_start):
    cpu = "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        found = re.search(r"(?m)^model name\s*:\s*(.+)$", info.read_text())
        cpu = found[1].strip() if found else cpu
    meminfo = Path("/proc/meminfo")
    ram = re.search(r"MemTotal:\s*(\d+)", meminfo.read_text()) if meminfo.exists() else None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=project_root, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(int(ram[1]) / 1024**2, 1) if ram else None,
        "postgresql": postgres_version,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        # 1-minute load averages: above the core count, something else shared the machine.
        "load": [round(load_at_start, 1), round(os.getloadavg()[0], 1)],
    }


def summary(results):
    """Median req/s, p50 and p99 over the rounds; errors and requests summed."""
    return {
        "rps": statistics.median(r.rps for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "errors": sum(r.error_count for r in results),
        "requests": sum(r.requests for r in results),
        "busy_cores": statistics.median(r.busy_cores for r in results),
    }


def ratio(top, bottom):
    return top / bottom if bottom else float("nan")


def verdict(met):
    return "not checked" if met is None else "yes" if met else "**NO**"


def served_lines(summaries, variants):
    lines = [
        "| request | served by | req/s | p50 ms | p99 ms | errors | requests | myservice / this |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for scenario, title in SCENARIOS.items():
        ours = summaries["myservice"][scenario]["rps"]
        for variant in variants:
            row = summaries[variant.key].get(scenario)
            if row is None:  # a peer is not driven on the deep page
                continue
            versus = "" if variant.app == "myservice" else f"{ratio(ours, row['rps']):.2f}x"
            lines.append(
                f"| {title} | {variant.key} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['errors']} | {row['requests']:,} | {versus} |"
            )
    return lines


def inprocess_lines(timings):
    lines = [
        "| request | myservice CPU ms | baseline CPU ms | ratio | myservice wall ms "
        "| baseline wall ms |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for kind, pair in timings.items():
        ours, base = pair["myservice"], pair["baseline"]
        lines.append(
            f"| {SCENARIOS[kind]} | {ours.cpu_ms:.3f} | {base.cpu_ms:.3f} | "
            f"{ratio(ours.cpu_ms, base.cpu_ms):.2f}x | {ours.wall_ms:.3f} | {base.wall_ms:.3f} |"
        )
    return lines


def writes_lines(writes, importer):
    single = writes.single_ms
    rows = [
        (f"{writes.users} x POST /users", single),
        (f"POST /users/bulk of {writes.users}", writes.bulk_ms),
        (
            f"myservice-import of {importer.users:,}",
            ratio(importer.seconds * 1000, importer.created),
        ),
    ]
    return [
        "| write | ms per user | users/s | single POSTs / this |",
        "|---|--:|--:|--:|",
        *(
            f"| {name} | {ms:.3f} | {1000 / ms:,.0f} | {ratio(single, ms):.1f}x |"
            for name, ms in rows
        ),
    ]


def comparison_lines(heading, comparison, outcome):
    """The head of a comparison's table: req/s served with and without the part, its cost."""
    title, part = SCENARIOS[comparison.scenario], comparison.part
    return [
        f"| {heading} | measured |",
        "|---|--:|",
        f"| {title}, req/s, with {part} (as shipped) | {outcome.shipped_rps:,.0f} |",
        f"| {title}, req/s, without {part} | {outcome.without_rps:,.0f} |",
        f"| {title}: throughput {part} costs (median of the rounds) | {outcome.cost:.1%} |",
    ]


def feed_lines(outcome, polls):
    short, long = (polls[length] for length in feed.FEED_LENGTHS)
    return [
        *comparison_lines("the change feed", feed.COMPARISON, outcome),
        f"| poll at the head of {feed.FEED_LENGTHS[0]:,} changes, CPU ms | {short['cpu_ms']:.3f} |",
        f"| poll at the head of {feed.FEED_LENGTHS[1]:,} changes, CPU ms | {long['cpu_ms']:.3f} |",
    ]


def auth_lines(outcome, timings):
    lines = comparison_lines("authentication", auth.COMPARISON, outcome)
    for kind, apps in timings.items():
        ours, without = apps["myservice"].cpu_ms, apps[NOAUTH].cpu_ms
        lines.append(
            f"| in process {SCENARIOS[kind]}: CPU ms with / without authentication | "
            f"{ours:.3f} / {without:.3f} ({ratio(ours, without) - 1:+.1%}) |"
        )
    return lines


def target_rows(summaries, variants, timings, memory, writes, feed_polls, comparisons):
    """(target, measured, met) for every target the run can check."""
    rows = []
    ours = summaries["myservice"]
    for variant in (v for v in variants if v.app == "baseline"):
        for scenario in ("get", "post", "page"):
            served = ratio(ours[scenario]["rps"], summaries[variant.key][scenario]["rps"])
            rows.append((
                f"served {SCENARIOS[scenario]}: myservice >= {SERVED_MIN_RATIO}x {variant.key}",
                f"{served:.2f}x",
                served >= SERVED_MIN_RATIO,
            ))  # fmt: skip
    for scenario in ("get", "post", "page"):
        gain = ratio(summaries[TWO_PROCESSES_KEY][scenario]["rps"], ours[scenario]["rps"])
        one, two = (
            summaries[key][scenario]["busy_cores"] for key in ("myservice", TWO_PROCESSES_KEY)
        )
        rows.append((
            f"served {SCENARIOS[scenario]}: 2 processes >= {TWO_PROCESSES_MIN_GAIN}x 1 process",
            f"{gain:.2f}x (the machine's busy cores: {one:.2f} of {os.cpu_count()} with one"
            f" process, {two:.2f} with two)",
            gain >= TWO_PROCESSES_MIN_GAIN,
        ))  # fmt: skip
    for peer, minimums in PEER_MIN_RATIOS.items():
        for scenario, minimum in minimums.items():
            served = ratio(ours[scenario]["rps"], summaries[peer][scenario]["rps"])
            rows.append((
                f"served {SCENARIOS[scenario]}: myservice >= {minimum}x {peer}",
                f"{served:.2f}x",
                served >= minimum,
            ))  # fmt: skip
    for kind, pair in timings.items():
        cpu = ratio(pair["myservice"].cpu_ms, pair["baseline"].cpu_ms)
        rows.append((
            f"in process {SCENARIOS[kind]}: CPU/request <= {CPU_MAX_RATIO}x baseline",
            f"{cpu:.2f}x",
            cpu <= CPU_MAX_RATIO,
        ))  # fmt: skip
    deep = ratio(ours["page"]["rps"], ours["deep"]["rps"])
    rows.append((
        f"deep page: first page req/s / deep page req/s <= {DEEP_MAX_RATIO}",
        f"{deep:.2f}x",
        deep <= DEEP_MAX_RATIO,
    ))  # fmt: skip
    rows.append((
        f"RSS growth < {RSS_MAX_GROWTH:.0%} over 100k requests ({memory.requests:,} served)",
        f"{memory.growth:+.1%}",
        memory.growth < RSS_MAX_GROWTH if memory.requests >= 100_000 else None,
    ))  # fmt: skip
    rows.append((
        f"bulk per user >= {BULK_MIN_SPEEDUP}x faster than single POSTs",
        f"{writes.speedup:.1f}x",
        writes.speedup >= BULK_MIN_SPEEDUP,
    ))  # fmt: skip
    short, long = (feed_polls[length]["cpu_ms"] for length in feed.FEED_LENGTHS)
    rows.append((
        f"feed poll at the head of {feed.FEED_LENGTHS[1]:,} changes <= {DEEP_MAX_RATIO}x "
        f"of {feed.FEED_LENGTHS[0]:,}",
        f"{ratio(long, short):.2f}x",
        ratio(long, short) <= DEEP_MAX_RATIO,
    ))  # fmt: skip
    for comparison in (c for c in COMPARISONS if c.max_cost is not None):
        cost = comparisons[comparison.key].cost
        rows.append((
            f"{comparison.part} costs < {comparison.max_cost:.0%} of served "
            f"{SCENARIOS[comparison.scenario]} req/s",
            f"{cost:.1%}",
            cost < comparison.max_cost,
        ))  # fmt: skip
    return rows


def tables(run):
    """The whole report as Markdown lines."""
    m, memory, writes, importer = (run[key] for key in ("machine", "memory", "writes", "importer"))
    comparisons = run["comparisons"]
    lines = [
        f"Run {m['date']} ({run['mode']}, commit {m['commit']}): {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gib']} GiB RAM, PostgreSQL {m['postgresql']}, Python {m['python']}, "
        f"load average {m['load'][0]} at start and {m['load'][1]} at the end; "
        f"{run['users']:,} users, the deep page is the one after id {run['users'] - 50:,}; "
        f"wrk -t4 -c16 for {run['seconds']} s per server and request in each of "
        f"{run['rounds']} round(s), the servers started and driven in the order "
        f"{', '.join(variant.key for variant in start_order(run['variants']))}; a round's "
        f"figure for one served twice is the mean of its two servers; medians over the rounds.",
        "",
        *served_lines(run["summaries"], run["variants"]),
        "",
        f"In process (no server): median of {run['repetitions']} x {run['calls']} calls.",
        "",
        *inprocess_lines(run["timings"]),
        "",
        f"Memory of the myservice server over {memory.requests:,} GET one user "
        f"({memory.seconds:.0f} s): RSS {memory.samples[0][1] / 1024:.1f} MiB after warm-up, "
        f"{memory.samples[-1][1] / 1024:.1f} MiB at the end ({memory.growth:+.1%}), "
        f"peak {memory.peak_kib / 1024:.1f} MiB.",
        "",
        f"Writing users on the myservice server over one keep-alive HTTP connection, one "
        f"request at a time: median of {len(writes.repetitions)} repetitions of each way; "
        f"myservice-import --batch {bulk.BATCH} of a CSV file in a subprocess, per its summary "
        f"line ({importer.wall_seconds:.1f} s wall with the process's start).",
        "",
        *writes_lines(writes, importer),
        "",
        f"The feed, authentication and the access line: POST /users (GET one user) over wrk "
        f"-t4 -c16 on myservice as shipped and on the same app without the feed (without "
        f"authentication, with the access logger at WARN): four fresh servers, started and "
        f"driven in the order shipped, without, without, shipped, {run['rounds']} round(s) of "
        f"{run['seconds']} s after a warm-up; the cost is the median over the rounds of "
        f"1 - with / without, each side the mean of its two servers. "
        f"Polls in process, median of {run['repetitions']} x {run['calls']} calls, in a "
        f"database of their own; in process with and without authentication as above.",
        "",
        *feed_lines(comparisons[feed.COMPARISON.key], run["feed_polls"]),
        "",
        *auth_lines(comparisons[auth.COMPARISON.key], run["timings"]),
        "",
        *comparison_lines("the access line", access.COMPARISON, comparisons[access.COMPARISON.key]),
        "",
        *replicas.lines(run["replicas"], run["rounds"], run["seconds"]),
        "",
        "| target | measured | met |",
        "|---|--:|---|",
        *(f"| {name} | {value} | {verdict(met)} |" for name, value, met in run["targets"]),
    ]
    lines.extend(f"\nNote: {note}" for note in run["notes"])
    return lines


def plain(value):
    if is_dataclass(value):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def write_json(run, directory):
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    raw = {key: value for key, value in run.items() if key != "variants"}
    raw["variants"] = [asdict(variant) for variant in run["variants"]]
    path.write_text(json.dumps(plain(raw), indent=1) + "\n")
    return path


def write_doc(lines, path):
    """Put ``lines`` between the markers of ``path`` (made if missing); the rest is kept."""
    text = path.read_text(encoding="utf-8") if path.exists() else DOC_HEADING + f"{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + START + "\n" + "\n".join(lines) + "\n" + END + tail, encoding="utf-8")
