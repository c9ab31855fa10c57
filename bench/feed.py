"""The change feed's price: writes per second with and without it, and a poll at its head.

1. Writes: ``POST /users`` driven by wrk on two servers from the same production.ini, one as
   shipped and one whose app never writes the feed (``nofeed_app``: the same app with the
   session's ``before_commit`` listener, which numbers and inserts the changes, removed), A B A B.
   With 16 connections this shows what the counter row costs when writers queue on it.
2. Polls: ``GET /changes?after=<head>`` in process, on a feed of 1,000 changes and then of
   1,000,000, in a database of its own (``<database>_feed``, created and seeded once): a poll is
   one range scan of the primary key, so both should cost the same.
"""

import os
import re
import statistics
from contextlib import contextmanager

import psycopg
from sqlalchemy import event
from webob import Request

import myservice
from bench import database, inprocess, served
from bench.server import free_port, migrate, running_server, write_ini
from bench.variants import section
from myservice.changes import write_pending_changes
from myservice.db import RequestSession

#: Feed lengths whose head is polled.
FEED_LENGTHS = (1_000, 1_000_000)

#: The comparison server's name in tables and JSON.
NOFEED_KEY = "myservice-nofeed"


def nofeed_app(global_config, **settings):
    """myservice without the feed (``use = call:bench.feed:nofeed_app``): a comparison only."""
    app = myservice.main(global_config, **settings)
    event.remove(RequestSession, "before_commit", write_pending_changes)
    return app


def nofeed_editor(text):
    """production.ini's text, its ``[app:main]`` served by ``nofeed_app``."""
    start, end = section(text, "app:main")
    app, replaced = re.subn(r"(?m)^use\s*=.*$", "use = call:bench.feed:nofeed_app", text[start:end])
    return text[:start] + app + text[end:] if replaced == 1 else text


def served_writes(stack, ini, directory, driver, shipped, rounds, seconds, progress):
    """POST /users on ``shipped`` and on a server without the feed (started here, stopped when
    ``stack`` closes), A B A B: ``summary`` of each."""
    port = free_port()
    path = write_ini(ini, directory, port, name="nofeed.ini", edit=nofeed_editor)
    progress(f"starting myservice without the feed on port {port}")
    stack.enter_context(running_server(path, dict(os.environ), port, 60))
    nofeed = served.Target(NOFEED_KEY, f"http://127.0.0.1:{port}", shipped.deep_path)
    return summary(write_rounds(driver, [shipped, nofeed], rounds, seconds, progress))


def write_rounds(driver, targets, rounds, seconds, progress):
    """{target key: [wrk Result of POST /users per round]}, alternating the targets."""
    results = {target.key: [] for target in targets}
    for number in range(1, rounds + 1):
        progress(f"feed writes: round {number}/{rounds}")
        for index, target in enumerate(targets):
            results[target.key].append(driver.once(target, "post", seconds, f"f{number}v{index}"))
    return results


@contextmanager
def environment(**values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def seed_changes(url, length):
    """Make the feed hold exactly seqs 1..``length`` (kept between runs)."""
    with psycopg.connect(url, autocommit=True) as connection:
        head = connection.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
        if head > length:
            connection.execute("DELETE FROM changes WHERE seq > %s", (length,))
            connection.execute("VACUUM ANALYZE changes")  # or a poll wades through dead rows
        elif head < length:
            connection.execute(
                "INSERT INTO changes (seq, at, type, resource, data) "
                "SELECT g, now(), 'user.created', '/users/' || g, "
                "json_build_object('id', g, 'username', 'user' || g) "
                "FROM generate_series(%s::bigint, %s::bigint) AS g",
                (head + 1, length),
            )
            connection.execute("VACUUM ANALYZE changes")
        connection.execute("UPDATE feed_counter SET seq = %s", (length,))


def poll_ms(app, head, calls, repetitions):
    """CPU and wall ms per ``GET /changes?after=head`` (an empty page), medians."""
    runs = []
    for _ in range(repetitions + 1):  # the first is a warm-up
        prepared = [Request.blank(f"/changes?after={head}").environ for _ in range(calls)]
        cpu, wall, unexpected = inprocess.call_all(app, prepared, "200")
        if unexpected:
            raise RuntimeError(f"GET /changes answered {dict(unexpected)}")
        runs.append((cpu * 1000 / calls, wall * 1000 / calls))
    runs = runs[1:]
    return {
        "cpu_ms": statistics.median(cpu for cpu, _ in runs),
        "wall_ms": statistics.median(wall for _, wall in runs),
    }


def polls(options, directory, root, progress):
    """{feed length: poll timing} in the feed's own database."""
    name = f"{options.database}_feed"
    database.ensure_database(f"{root}/postgres", name)
    url = f"{root}/{name}"
    with environment(DATABASE_URL=url.replace("postgresql://", "postgresql+psycopg://", 1)):
        migrate(write_ini(options.ini, directory, free_port(), name="feed.ini"), dict(os.environ))
        app = inprocess.myservice_app(options.ini)
        timings = {}
        for length in FEED_LENGTHS:
            progress(f"feed polls: a feed of {length:,} changes")
            seed_changes(url, length)
            timings[length] = poll_ms(app, length, options.calls, options.repetitions)
    return timings


def summary(results):
    """Median requests/s and the summed errors of each target's rounds."""
    return {
        key: {
            "rps": statistics.median(result.rps for result in runs),
            "errors": sum(result.error_count for result in runs),
        }
        for key, runs in results.items()
    }
