"""The declarative base, its naming convention and the column types every table shares."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase
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

    def result_processor(self, dialect, coltype):
        # PostgreSQL sessions run with TimeZone=UTC (``myservice.db.make_engine``), so
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
