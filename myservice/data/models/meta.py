"""The declarative base, its naming convention and the column types every table shares."""

import functools
import unicodedata
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    bindparam,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from myservice.data.db import mark_changed

# Stable constraint names: migrations can refer to them, and errors can be told apart by them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Ids are 64-bit. SQLite spells it INTEGER so the column stays the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: The largest id a BigId column can hold; a larger id in a URL cannot name a row.
MAX_ID = 2**63 - 1


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime, whatever the database keeps (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: use an aware UTC datetime")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def result_processor(self, dialect, coltype):
        # PostgreSQL sessions run with TimeZone=UTC (``myservice.data.engine.make_engine``), so
        # values arrive as aware UTC datetimes already: a call per value would change nothing.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


def utcnow():
    return datetime.now(UTC)


def caseless(text: str) -> str:
    """``text`` as uniqueness compares it: Unicode's canonical caseless match (NFD, case-folded,
    NFC), so ``RENÉE``, ``renée`` and ``rene`` + U+0301 + ``e`` are one, and ``Straße`` is
    ``STRASSE``. In Python, not SQL: SQLite's ``lower()`` folds ASCII only, PostgreSQL's
    depends on the database's collation, and neither composes."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def caseless_of(column: str):
    """A column default: ``caseless`` of the row's ``column``, for a row inserted without its
    key (``insert_new`` and ``insert_users`` insert dicts; an entity's key is set as its
    value is, by the model's ``@validates``)."""
    return lambda context: caseless(context.get_current_parameters()[column])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Versioned:
    """A resource's timestamps and version: ``version`` starts at 1 and counts changes.

    Every UPDATE and DELETE says "WHERE version = <the version we read>": a concurrent change
    makes it match no row, and SQLAlchemy raises StaleDataError, which zope.sqlalchemy reports
    as retryable, so pyramid_retry replays the request on fresh data.
    """

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime,
        default=lambda context: context.get_current_parameters()["created_at"],
        onupdate=utcnow,
    )
    version: Mapped[int] = mapped_column()

    @declared_attr.directive
    def __mapper_args__(cls):
        return {"version_id_col": cls.__table__.c.version}


@functools.cache
def select_by_id(table):
    """``SELECT * FROM table WHERE id = :id``, built once: SQLAlchemy then finds its compiled
    form without building the statement and its cache key again on every request."""
    return select(table).where(table.c.id == bindparam("id"))


def records(result):
    """The rows of ``result`` as dicts, for a response model to read: pydantic reads a dict's
    values in C, and a ``Row``'s attributes one by one through SQLAlchemy's ``__getattr__``,
    which took half the time of validating a page of 50 users (docs/performance.md)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


@functools.cache
def _insert_or_nothing(table, dialect_name):
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect_name]
    return insert(table).on_conflict_do_nothing().returning(*table.c)


def insert_new(session: Session, model, values: dict):
    """Insert one ``model`` row and return it (a row, not an entity), or ``None`` when one of its
    unique values is taken, by a committed row or by a concurrent insert that then commits.

    ``INSERT ... ON CONFLICT DO NOTHING RETURNING *`` (PostgreSQL and SQLite): a taken value
    returns no row instead of raising, so the transaction stays usable. Core, not the unit of
    work, which cost three times the statement; zope.sqlalchemy does not see Core writes,
    hence ``mark_changed``.
    """
    statement = _insert_or_nothing(model.__table__, session.get_bind().dialect.name)
    row = session.execute(statement, {**values, "version": 1}).first()
    mark_changed(session)
    return row


def held_elsewhere(session: Session, conditions: dict[str, ColumnElement[bool]], other_than=None):
    """The names of ``conditions`` that some row satisfies, in one query; ``other_than`` (a
    condition such as ``User.id != 7``, or None) leaves the row being saved out."""
    query = select(*conditions.values()).where(or_(*conditions.values()))
    if other_than is not None:
        query = query.where(other_than)
    with session.no_autoflush:
        rows = session.execute(query).all()
    return [name for n, name in enumerate(conditions) if any(row[n] for row in rows)]
