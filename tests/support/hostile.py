"""What a refused request must leave behind: nothing stored (every table read back unchanged)
and nothing of the internals shown (no traceback, path, SQL, library or class name)."""

import re
from contextlib import contextmanager

from sqlalchemy import select

from myservice.data.models import Base
from myservice.data.models.token import TOKENS

#: What no response may show: a traceback, a source path, SQL, a library, a Python class name.
INTERNALS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/usr/|sqlalchemy|psycopg|sqlite|pydantic|jiter"
    r"|webob|waitress|\bSELECT\b|\bINSERT INTO\b|\bDELETE FROM\b|\bUPDATE \w+ SET\b|<class"
    r"|[A-Za-z](?:Error|Exception)\b",
)


def snapshot(connection):
    """Every row of every table, in key order: what any stored write would change (but a
    token's ``last_used_at``, which any authenticated request may note, once a minute)."""
    return {
        table.name: connection.execute(
            select(*(c for c in table.c if c is not TOKENS.c.last_used_at)).order_by(
                *table.primary_key
            )
        ).all()
        for table in Base.metadata.sorted_tables
    }


@contextmanager
def stores_nothing(read):
    before = read()
    yield
    assert read() == before, "a refused request changed the database"


def assert_no_internals(text):
    leak = INTERNALS.search(text)
    assert leak is None, f"{leak.group()!r} reached the client: {text[:300]}"
