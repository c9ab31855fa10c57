"""caseless keys: emails and group names unique in any case and Unicode composition

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

The unique indexes on ``lower(email)`` and ``lower(name)`` gave way to indexes on key columns,
``users.email_key`` and ``groups.name_key``, which the service fills with ``caseless(...)``
(NFD, case-folded, NFC) of the email as email-validator normalizes it, and of the group name:
SQLite's ``lower()`` folds ASCII only, PostgreSQL's follows the database's collation, and
neither composes, so ``renée@...`` and ``RENÉE@...`` were two users (docs/design.md).

The keys of the rows already stored are computed here with the service's own functions, so that
they are exactly what the service computes for a new row. Rows that the new rule makes one (two
users whose emails differ only in accents' case or composition) stop the migration, which names
them and changes nothing: an operator decides which keeps the address, then migrates again.
"""

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError

from myservice.api.schemas import email_address
from myservice.data.models.meta import caseless

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def email_key(email):
    """The key of a stored email: ``caseless`` of its normalized form (of itself, for one that
    today's email-validator would refuse)."""
    try:
        return caseless(email_address(email))
    except EmailNotValidError:
        return caseless(email)


#: (table, column, key column, key length, old index, new index, the key of a value)
KEYS = [
    ("users", "email", "email_key", 762, "uq_users_email_lower", "uq_users_email_key", email_key),
    ("groups", "name", "name_key", 192, "uq_groups_name_lower", "uq_groups_name_key", caseless),
]


def upgrade():
    connection = op.get_bind()
    for table, column, key, length, old_index, new_index, key_of in KEYS:
        # SQLite adds a NOT NULL column only with a default; it keeps that default ('', which
        # no row written by the service has), since dropping it would mean copying the table,
        # and with foreign keys on, dropping the old copy deletes its memberships (CASCADE).
        op.add_column(table, sa.Column(key, sa.String(length), nullable=False, server_default=""))
        fill_keys(connection, table, column, key, key_of)
        if connection.dialect.name != "sqlite":
            op.alter_column(table, key, server_default=None)
        op.drop_index(old_index, table_name=table)
        op.create_index(new_index, table, [key], unique=True)


def fill_keys(connection, table, column, key, key_of):
    """Set every row's ``key`` from its ``column``; stop, naming the rows, when two share one."""
    rows = sa.table(table, sa.column("id"), sa.column(column), sa.column(key))
    stored = connection.execute(sa.select(rows.c.id, rows.c[column]))
    keys = {row_id: key_of(value) for row_id, value in stored}
    holders = {}
    for row_id, value in sorted(keys.items()):
        holders.setdefault(value, []).append(row_id)
    shared = [ids for ids in holders.values() if len(ids) > 1]
    if shared:
        groups = "; ".join(", ".join(map(str, ids)) for ids in shared)
        raise RuntimeError(
            f"{table} with ids {groups}: each of these sets has one {column} in any case and"
            f" Unicode composition, which the new unique index refuses; change the {column} of"
            " all but one of each set, then migrate again"
        )
    if keys:
        connection.execute(
            rows.update()
            .where(rows.c.id == sa.bindparam("row_id"))
            .values({key: sa.bindparam("row_key")}),
            [{"row_id": row_id, "row_key": value} for row_id, value in keys.items()],
        )


def downgrade():
    for table, column, key, _, old_index, new_index, _ in reversed(KEYS):
        op.drop_index(new_index, table_name=table)
        op.drop_column(table, key)
        op.create_index(old_index, table, [sa.text(f"lower({column})")], unique=True)
