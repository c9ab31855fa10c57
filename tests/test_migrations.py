"""The migrations: ``alembic upgrade head`` builds exactly the models' schema, ``downgrade base``
takes it all away again.

Every test migrates a new, empty database (conftest's ``empty_database``: a new SQLite file, or
on PostgreSQL a new schema of the test database) with the real alembic command line
(``migrate``). The session's ``db_url`` database, which other tests use, is never touched.
"""

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from myservice.data.models import Base, Group, User
from myservice.data.models.meta import caseless
from tests.support.database import migrate, short_lived_engine
from tests.support.paths import DEVELOPMENT_INI, ROOT

#: Every table of the models' schema.
TABLES = {
    "users",
    "groups",
    "memberships",
    "changes",
    "feed_counter",
    "idempotency_keys",
    "api_tokens",
    "service_mode",
}


def query(url, sql, **params):
    with short_lived_engine(url) as engine, engine.connect() as connection:
        return connection.execute(text(sql), params).all()


def table_names(database):
    with short_lived_engine(database.url) as engine, engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def schema_diff(database):
    """What alembic autogenerate would change to bring the database to the models."""
    with short_lived_engine(database.url) as engine, engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def objects_besides_alembic_version(database):
    """Every table, index and sequence of the database, except alembic's own."""
    if database.is_sqlite:
        # sqlite_sequence (AUTOINCREMENT's counters) is SQLite's own and cannot be dropped.
        rows = query(
            database.url,
            "SELECT name FROM sqlite_master"
            " WHERE tbl_name != 'alembic_version' AND name != 'sqlite_sequence'",
        )
    else:
        rows = query(
            database.url,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname NOT LIKE 'alembic_version%'",
            schema=database.schema,
        )
    return {name for (name,) in rows}


def head_revision():
    return ScriptDirectory.from_config(Config(str(DEVELOPMENT_INI))).get_current_head()


def test_upgrade_head_on_an_empty_database_yields_exactly_the_models_schema(empty_database):
    assert table_names(empty_database) == set()

    migrate(empty_database.url, "upgrade", "head")

    assert table_names(empty_database) == {"alembic_version", *TABLES}
    assert schema_diff(empty_database) == []
    if empty_database.is_sqlite:  # a table option that compare_metadata does not look at
        for model in (User, Group):
            [(sql,)] = query(
                empty_database.url,
                "SELECT sql FROM sqlite_master WHERE name = :name",
                name=model.__tablename__,
            )
            autoincrement = model.__table__.dialect_options["sqlite"]["autoincrement"]
            assert ("AUTOINCREMENT" in sql) == autoincrement
    assert query(empty_database.url, "SELECT version_num FROM alembic_version") == [
        (head_revision(),)
    ]


def test_upgrade_head_starts_the_change_feed_counter_at_zero(empty_database):
    migrate(empty_database.url, "upgrade", "head")

    assert query(empty_database.url, "SELECT id, seq FROM feed_counter") == [(1, 0)]


@pytest.mark.parametrize(
    ("table", "index", "key"),
    [("users", "uq_users_email_key", "email_key"), ("groups", "uq_groups_name_key", "name_key")],
)
def test_upgrade_head_creates_the_unique_caseless_key_indexes(empty_database, table, index, key):
    migrate(empty_database.url, "upgrade", "head")

    with short_lived_engine(empty_database.url) as engine, engine.connect() as connection:
        indexes = {i["name"]: i for i in inspect(connection).get_indexes(table)}
    assert indexes[index]["column_names"] == [key]
    assert indexes[index]["unique"]
    assert not any(name.endswith("_lower") for name in indexes)


def test_upgrade_head_makes_the_database_refuse_two_rows_with_one_caseless_key(empty_database):
    migrate(empty_database.url, "upgrade", "head")

    with short_lived_engine(empty_database.url) as engine:
        with engine.begin() as connection:
            connection.execute(
                insert(User).values(username="renee", email="renée@example.org", version=1)
            )
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(  # the model fills the key in, as the service's inserts do
                insert(User).values(username="bob", email="RENE\u0301E@example.org", version=1)
            )


def stored_before_0007(database, users=(), groups=()):
    """Migrate ``database`` to 0006 and store ``users`` ({username: email}) and ``groups``
    (names) as they were stored then, with raw SQL."""
    migrate(database.url, "upgrade", "0006")
    with short_lived_engine(database.url) as engine, engine.begin() as connection:
        for number, (username, email) in enumerate(users.items(), start=1):
            connection.execute(
                text(
                    "INSERT INTO users (id, username, email, full_name, created_at, updated_at,"
                    " version) VALUES (:id, :username, :email, '', :t, :t, 1)"
                ),
                {"id": number, "username": username, "email": email, "t": "2026-01-01"},
            )
        for number, name in enumerate(groups, start=1):
            connection.execute(
                text(
                    "INSERT INTO groups (id, name, description, member_count, created_at,"
                    " updated_at, version) VALUES (:id, :name, '', 0, :t, :t, 1)"
                ),
                {"id": number, "name": name, "t": "2026-01-01"},
            )


def test_0007_computes_the_keys_of_the_rows_stored_before_it(empty_database):
    stored_before_0007(
        empty_database,
        users={"renee": "Rene\u0301e@Example.ORG", "ada": "ada@example.org"},
        groups=["E\u0301quipe", "Straße"],
    )

    migrate(empty_database.url, "upgrade", "head")

    assert query(empty_database.url, "SELECT id, email, email_key FROM users ORDER BY id") == [
        (1, "Rene\u0301e@Example.ORG", "renée@example.org"),  # the email as it was, its key
        (2, "ada@example.org", "ada@example.org"),
    ]
    assert query(empty_database.url, "SELECT name_key FROM groups ORDER BY id") == [
        ("équipe",),
        ("strasse",),
    ]


def test_0007_refuses_rows_that_become_one_and_changes_nothing(empty_database):
    """Two emails that differ only in an accent's composition and case were two users (each
    database's ``lower()`` kept them apart); the migration names them and stops."""
    stored_before_0007(
        empty_database,
        users={
            "one": "renée@example.org",
            "two": "ada@example.org",
            "three": "RENE\u0301E@example.org",
        },
    )

    with pytest.raises(subprocess.CalledProcessError) as failed:
        migrate(empty_database.url, "upgrade", "head")

    assert "users with ids 1, 3: each of these sets has one email" in failed.value.stderr.decode()
    assert query(empty_database.url, "SELECT version_num FROM alembic_version") == [("0006",)]
    with short_lived_engine(empty_database.url) as engine, engine.connect() as connection:
        assert "email_key" not in {c["name"] for c in inspect(connection).get_columns("users")}


def test_upgrade_head_makes_the_database_enforce_names_counts_and_memberships(empty_database):
    migrate(empty_database.url, "upgrade", "head")

    with short_lived_engine(empty_database.url) as engine, engine.begin() as connection:
        if empty_database.is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        connection.execute(
            text(
                "INSERT INTO users (id, username, email, email_key, full_name, created_at,"
                " updated_at, version) VALUES (1, 'ada', 'ada@example.org', 'ada@example.org',"
                " '', :t, :t, 1)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
        group = (
            "INSERT INTO groups (id, name, name_key, description, max_members, member_count,"
            " created_at, updated_at, version)"
            " VALUES (:id, :name, :key, '', :max, :count, :t, :t, 1)"
        )

        def values(name, **others):
            return {"name": name, "key": caseless(name), "t": "2026-01-01", **others}

        connection.execute(text(group), values("Ops", id=1, max=1, count=1))
        connection.execute(text("INSERT INTO memberships VALUES (1, 1, '2026-01-01')"))
        for name, count in (("OPS", 0), ("full", 2)):  # a taken name, a count over the max
            with pytest.raises(IntegrityError), connection.begin_nested():
                connection.execute(text(group), values(name, id=2, max=1, count=count))
        with pytest.raises(IntegrityError), connection.begin_nested():  # a second membership
            connection.execute(text("INSERT INTO memberships VALUES (1, 1, '2026-01-01')"))
        with pytest.raises(IntegrityError), connection.begin_nested():  # RESTRICT
            connection.execute(text("DELETE FROM users WHERE id = 1"))
        connection.execute(text("DELETE FROM groups WHERE id = 1"))  # CASCADE
        assert connection.execute(text("SELECT count(*) FROM memberships")).scalar() == 0


def test_on_postgresql_alembic_migrates_the_schema_that_the_url_selects(
    empty_database, db_url, postgres_only
):
    """(A SQLite database is its file: there is no schema to select.)"""
    [(current_schema,)] = query(empty_database.url, "SELECT current_schema()")
    assert current_schema == empty_database.schema

    migrate(empty_database.url, "upgrade", "head")

    # Asked by name through the session's URL, which does not select the schema.
    rows = query(
        db_url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema",
        schema=empty_database.schema,
    )
    assert {name for (name,) in rows} == {"alembic_version", *TABLES}


def test_downgrade_base_leaves_no_table_but_alembic_version(empty_database):
    migrate(empty_database.url, "upgrade", "head")
    indexes = {"uq_users_email_key", "uq_groups_name_key", "ix_memberships_user_id_group_id"}
    assert TABLES | indexes <= objects_besides_alembic_version(empty_database)

    migrate(empty_database.url, "downgrade", "base")

    assert table_names(empty_database) <= {"alembic_version"}
    assert objects_besides_alembic_version(empty_database) == set()  # no index or sequence left
    assert query(empty_database.url, "SELECT version_num FROM alembic_version") == []


def test_a_downgraded_database_upgrades_again_to_exactly_the_models_schema(empty_database):
    migrate(empty_database.url, "upgrade", "head")
    migrate(empty_database.url, "downgrade", "base")

    migrate(empty_database.url, "upgrade", "head")

    assert schema_diff(empty_database) == []


def test_alembic_check_finds_no_difference_between_the_migrations_and_the_models(empty_database):
    """``alembic check`` (as a maintainer runs it, and ``revision --autogenerate`` relies on the
    same comparison): a model without its migration, or a migration without its model, fails."""
    migrate(empty_database.url, "upgrade", "head")

    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(DEVELOPMENT_INI), "check"],
        env={**os.environ, "DATABASE_URL": empty_database.url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected." in result.stdout + result.stderr
