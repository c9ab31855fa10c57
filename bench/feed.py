"""The change feed's price: writes per second with and without it, and a poll at its head.

1. Writes: ``POST /users`` served with and without the feed (``bench/compare.py``; without:
   ``nofeed_app``, the same app with the session's ``before_commit`` listener, which numbers and
   inserts the changes, removed). With 16 connections this shows what the counter row costs
   when writers queue on it.
2. Polls: ``GET /changes?after=<head>`` in process, on a feed of 1,000 changes and then of
   1,000,000, in a database of its own (``<database>_feed``, created and seeded once): a poll is
   one range scan of the primary key, so both should cost the same.
"""

import os
import statistics
from contextlib import contextmanager

import psycopg
from sqlalchemy import event
from webob import Request

import myservice
from bench import database, inprocess
from bench.compare import Comparison
from bench.server import migrate
from bench.variants import app_editor
from myservice.api.changes import write_pending_changes
from myservice.data.db import RequestSession
from tests.support.processes import free_port, write_ini

#: Feed lengths whose head is polled.
FEED_LENGTHS = (1_000, 1_000_000)

#: POST /users with and without the feed.
COMPARISON = Comparison(
    "myservice-nofeed", app_editor("call:bench.feed:nofeed_app"), "post", "the feed"
)


def nofeed_app(global_config, **settings):
    """myservice without the feed (``use = call:bench.feed:nofeed_app``): a comparison only."""
    app = myservice.main(global_config, **settings)
    event.remove(RequestSession, "before_commit", write_pending_changes)
    return app


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


def poll_ms(app, head, calls, repetitions, token):
    """CPU and wall ms per ``GET /changes?after=head`` (an empty page) with the bearer
    ``token``, medians."""
    headers = {"Authorization": f"Bearer {token}"}
    runs = []
    for _ in range(repetitions + 1):  # the first is a warm-up
        path = f"/changes?after={head}"
        prepared = [Request.blank(path, headers=headers).environ for _ in range(calls)]
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
    with environment(DATABASE_URL=database.alchemy_url(url)):
        migrate(write_ini(options.ini, directory, free_port(), name="feed.ini"), dict(os.environ))
        app = inprocess.myservice_app(options.ini)
        timings = {}
        with database.token(url) as token:
            for length in FEED_LENGTHS:
                progress(f"feed polls: a feed of {length:,} changes")
                seed_changes(url, length)
                timings[length] = poll_ms(app, length, options.calls, options.repetitions, token)
    return timings
