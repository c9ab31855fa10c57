"""The declarative base, its naming convention and the column types every table shares."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, ColumnElement, DateTime, Integer, MetaData, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

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

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


def utcnow():
    return datetime.now(UTC)


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


def held_elsewhere(session: Session, conditions: dict[str, ColumnElement[bool]], other_than=None):
    """The names of ``conditions`` that some row satisfies, in one query; ``other_than`` (a
    condition such as ``User.id != 7``, or None) leaves the row being saved out."""
    query = select(*conditions.values()).where(or_(*conditions.values()))
    if other_than is not None:
        query = query.where(other_than)
    with session.no_autoflush:
        rows = session.execute(query).all()
    return [name for n, name in enumerate(conditions) if any(row[n] for row in rows)]
