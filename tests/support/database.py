"""The test database seen from outside the app: migrated by the real alembic command line,
looked at through engines of the tests' own, emptied of what tests committed, and given tokens
as ``myservice-token`` gives them, and idempotency keys as requests store them."""

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import MetaData, create_engine, func, insert, select, text

from myservice.data.models import Group, IdempotencyKey, Membership, User
from myservice.data.models.token import TOKENS, create_token
from myservice.data.scripts import session_scope
from tests.support.paths import DEVELOPMENT_INI, ROOT


def migrate(url, *args):
    """Run the alembic command line, as docs/deployment.md does, against ``url``."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(DEVELOPMENT_INI), *args],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@contextmanager
def short_lived_engine(url):
    """An engine of its own for a test's direct look at the database, disposed afterwards."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def drop_everything(url):
    with short_lived_engine(url) as engine, engine.begin() as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        metadata.drop_all(connection)


def delete_all_rows(url):
    """Delete every row the tests may commit (in the order the foreign keys allow), and start
    the change feed again at seq 1."""
    with short_lived_engine(url) as engine, engine.begin() as connection:
        for table in ("memberships", "groups", "users", "changes", "idempotency_keys"):
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(text("UPDATE feed_counter SET seq = 0"))


def new_token(url, name, scopes, expires_at=None):
    """Store a token in the database at ``url`` (committed) and return its secret."""
    with session_scope({"sqlalchemy.url": url}) as session:
        return create_token(session, name, scopes, expires_at)


def add_keys(connection, expires_at, count):
    """``count`` idempotency keys of the tests' token (conftest's ``token``), expiring at
    ``expires_at``; their names."""
    owner = connection.scalar(select(TOKENS.c.id).where(TOKENS.c.name == "tests"))
    keys = [f"old-{n}-{uuid.uuid4().hex}" for n in range(count)]
    rows = [
        {"token_id": owner, "key": key, "fingerprint": "0" * 64, "expires_at": expires_at}
        for key in keys
    ]
    connection.execute(insert(IdempotencyKey.__table__), rows)
    return keys


def stored_keys(connection):
    """The names of every idempotency key stored."""
    return set(connection.scalars(select(IdempotencyKey.__table__.c.key)))


def assert_invariants(db_url, group_ids):
    """The membership invariants, read from the tables: each group's count is its memberships',
    within its limit, and no membership outlives its user."""
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        groups = connection.execute(
            select(Group.id, Group.member_count, Group.max_members).where(Group.id.in_(group_ids))
        ).all()
        counted = dict(
            connection.execute(
                select(Membership.group_id, func.count())
                .where(Membership.group_id.in_(group_ids))
                .group_by(Membership.group_id)
            ).all()
        )
        orphans = connection.scalar(
            select(func.count())
            .select_from(Membership)
            .outerjoin(User, User.id == Membership.user_id)
            .where(User.id.is_(None))
        )
    for group_id, member_count, max_members in groups:
        assert member_count == counted.get(group_id, 0), group_id
        assert max_members is None or member_count <= max_members, group_id
    assert orphans == 0
    return {group_id: member_count for group_id, member_count, _ in groups}


@dataclass
class Database:
    """A database of a test's own (conftest's ``empty_database``)."""

    url: str
    schema: str | None  # the PostgreSQL schema the URL selects; None on SQLite

    @property
    def is_sqlite(self):
        return self.schema is None
