"""The benchmark's own PostgreSQL database: created when missing, migrated, seeded once.

Users 1..N are seeded by one ``INSERT ... SELECT FROM generate_series`` (usernames ``userN``,
emails ``userN@example.com``, version 1) and kept across runs; a run deletes whatever it
created (ids above N) when it ends, and at its start in case an earlier run was killed.

Each run makes its own API token (``token``) and deletes it when it ends: no secret is kept
anywhere between runs.
"""

import secrets
import time
from contextlib import contextmanager
from datetime import timedelta

import psycopg
from psycopg import sql
from sqlalchemy import create_engine

from myservice.api.pagination import Cursors, listing
from myservice.data.models.meta import utcnow
from myservice.data.models.token import TOKENS, create_token
from tests.support.processes import SetupError as BenchError

#: A run's token lives this long, so one that a killed run left behind is refused anyway; the
#: next run deletes it.
TOKEN_LIFETIME = timedelta(days=1)

#: Databases this tool never creates, seeds or trims: the test suites' own.
FORBIDDEN_PREFIXES = ("test",)


def ensure_database(admin_url, name):
    """Create database ``name`` through ``admin_url`` (the ``postgres`` database) if missing."""
    if name.startswith(FORBIDDEN_PREFIXES) or name in ("postgres", "template0", "template1"):
        raise BenchError(f"refusing to benchmark in database {name!r}: pick another --database")
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return connection.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as error:
        raise BenchError(f"cannot reach PostgreSQL at {admin_url}: {error}") from error


def seed(url, users, progress):
    """Make the users table hold exactly ids 1..``users``; returns the seconds spent."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        delete_created(connection, users)
        count, top = connection.execute(
            "SELECT count(*), coalesce(max(id), 0) FROM users"
        ).fetchone()
        if count == users:
            return 0.0
        if count != top:  # holes: start again
            connection.execute("TRUNCATE users")
            top = 0
        progress(f"seeding users {top + 1:,}..{users:,} (once; later runs reuse them)")
        connection.execute(
            "INSERT INTO users (id, username, email, email_key, full_name, created_at, "
            "updated_at, version) SELECT g, 'user' || g, 'user' || g || '@example.com', "
            "'user' || g || '@example.com', 'Bench User ' || g, "
            "now(), now(), 1 FROM generate_series(%s::bigint, %s::bigint) AS g",
            (top + 1, users),
        )
        connection.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), %s)", (users,))
        connection.execute("VACUUM ANALYZE users")
    return time.perf_counter() - started


def trim(url, users):
    """Delete the users a run created (every id above the seeded ones); returns how many."""
    with psycopg.connect(url, autocommit=True) as connection:
        return delete_created(connection, users)


def delete_created(connection, users):
    """Delete every user above the seeded ``users``, then vacuum the table when there were any:
    their dead rows sit past the deep page's last row, where its query looks for one more, and
    a server without autovacuum (some CI machines') would keep them run after run, slowing the
    deep page of every later run (1.03x the first page's time in one run, 1.89x three runs on)."""
    deleted = connection.execute("DELETE FROM users WHERE id > %s", (users,)).rowcount
    if deleted:
        connection.execute("VACUUM ANALYZE users")
    return deleted


def deep_cursor(secret, after):
    """The cursor myservice issues for the page of ``GET /users`` after id ``after``, signed
    with ``secret``."""
    return Cursors([secret]).mint(after, listing("users"))


def alchemy_url(url):
    """The SQLAlchemy URL of a libpq one (``postgresql://``): psycopg 3's dialect."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def token(url):
    """The secret of a new ``read`` and ``write`` token in the database at ``url``, made with
    myservice's own ``create_token``, until the block ends (then it is deleted)."""
    name = f"bench-{secrets.token_hex(4)}"
    engine = create_engine(alchemy_url(url))
    try:
        with engine.begin() as connection:
            left = TOKENS.c.name.startswith("bench-") & (TOKENS.c.expires_at < utcnow())
            connection.execute(TOKENS.delete().where(left))
            secret = create_token(connection, name, ["read", "write"], utcnow() + TOKEN_LIFETIME)
        yield secret
    finally:
        with engine.begin() as connection:
            connection.execute(TOKENS.delete().where(TOKENS.c.name == name))
        engine.dispose()
