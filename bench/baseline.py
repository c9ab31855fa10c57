"""The bare baseline: myservice's users routes as one WSGI callable, no framework.

The same SQL as myservice for the routes the benchmark drives, through a ``psycopg_pool``
connection pool, with orjson for the JSON: what the hardware, waitress and PostgreSQL allow
before any framework cost. It is served by ``pserve`` with the ``[server:main]`` of
production.ini (``use = call:bench.baseline:app_factory``), on ``DATABASE_URL``.

- ``GET /users/{id}``: the 7 user columns, 404 when missing.
- ``POST /users``: orjson, minimal checks, INSERT ... RETURNING in a transaction; 409 when taken.
- ``GET /users?limit=50[&after=N]``: the keyset page ``WHERE id > N ORDER BY id LIMIT 51``.
- ``GET /health``: 200, no database.
"""

import os
import re
from urllib.parse import parse_qs

import orjson
import psycopg
from psycopg_pool import ConnectionPool

COLUMNS = "id, username, email, full_name, created_at, updated_at, version"
NAMES = tuple(COLUMNS.split(", "))
SELECT_ONE = f"SELECT {COLUMNS} FROM users WHERE id = %s"
SELECT_PAGE = f"SELECT {COLUMNS} FROM users WHERE id > %s ORDER BY id LIMIT %s"
INSERT = (
    "INSERT INTO users (username, email, email_key, full_name, created_at, updated_at, version) "
    f"VALUES (%s, %s, %s, %s, now(), now(), 1) RETURNING {COLUMNS}"
)
USER_PATH = re.compile(r"/users/(\d{1,18})")
JSON = [("Content-Type", "application/json")]
MAX_LIMIT = 200


def conninfo(url):
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


def dump(value):
    # OPT_UTC_Z: timestamps end in "Z", as myservice renders them (RFC 3339).
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def make_app(pool):
    """The WSGI callable over an open ``pool``."""

    def app(environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        try:
            status, headers, body = route(pool, environ, method, path)
        except psycopg.errors.UniqueViolation:
            status, headers, body = "409 Conflict", JSON, b'{"detail":"taken"}'
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


def route(pool, environ, method, path):
    match = USER_PATH.fullmatch(path)
    if match and method == "GET":
        return get_user(pool, int(match[1]))
    if path == "/users" and method == "GET":
        return list_users(pool, parse_qs(environ.get("QUERY_STRING", "")))
    if path == "/users" and method == "POST":
        return create_user(pool, environ)
    if path == "/health":
        return "200 OK", JSON, b'{"status":"ok"}'
    return "404 Not Found", JSON, b'{"detail":"not found"}'


def get_user(pool, user_id):
    with pool.connection() as connection:
        row = connection.execute(SELECT_ONE, (user_id,)).fetchone()
    if row is None:
        return "404 Not Found", JSON, b'{"detail":"no such user"}'
    return "200 OK", [*JSON, ("ETag", f'"{row[6]}"')], dump(dict(zip(NAMES, row, strict=True)))


def list_users(pool, query):
    try:
        limit = int(query.get("limit", ["50"])[0])
        after = int(query.get("after", ["0"])[0])
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        return "400 Bad Request", JSON, b'{"detail":"bad limit or after"}'
    with pool.connection() as connection:
        rows = connection.execute(SELECT_PAGE, (after, limit + 1)).fetchall()
    next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
    items = [dict(zip(NAMES, row, strict=True)) for row in rows[:limit]]
    return "200 OK", JSON, dump({"items": items, "next_cursor": next_cursor})


def create_user(pool, environ):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        data = orjson.loads(environ["wsgi.input"].read(size))
        email = data["email"]
        fields = (data["username"].lower(), email, email.casefold(), data.get("full_name", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "422 Unprocessable Entity", JSON, b'{"detail":"invalid user"}'
    if not all(isinstance(field, str) for field in fields):
        return "422 Unprocessable Entity", JSON, b'{"detail":"invalid user"}'
    with pool.connection() as connection:  # one transaction, committed when the block ends
        row = connection.execute(INSERT, fields).fetchone()
    headers = [*JSON, ("Location", f"/users/{row[0]}"), ("ETag", '"1"')]
    return "201 Created", headers, dump(dict(zip(NAMES, row, strict=True)))


def open_pool(url, size):
    """A pool of ``size`` connections that read timestamps in UTC."""
    return ConnectionPool(
        conninfo(url),
        min_size=size,
        max_size=size,
        kwargs={"options": "-c timezone=UTC"},
        open=True,
    )


def app_factory(global_config, **settings):
    """The ``paste.app_factory``: ``pool_size`` from the ini, the database from DATABASE_URL."""
    pool = open_pool(os.environ["DATABASE_URL"], int(settings.get("pool_size", 8)))
    pool.wait()
    return make_app(pool)
