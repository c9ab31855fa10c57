"""The change feed's tables: one row per committed change, and the counter that numbers them.

``changes.seq`` is not an autoincrement: ``append_changes`` takes it from the one row of
``feed_counter`` in the writing transaction, which orders the commits (see docs/design.md).
"""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Integer,
    String,
    bindparam,
    column,
    func,
    insert,
    null,
    select,
    true,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from myservice.data.db import mark_changed
from myservice.data.models.meta import Base, BigId, UTCDateTime, utcnow
from myservice.data.roundtrips import execute_and_commit


class Change(Base):
    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(255))  # the resource's path
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))


class FeedCounter(Base):
    """One row: the ``seq`` of the last change (0 before the first). The migration creates it."""

    __tablename__ = "feed_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


CHANGES = Change.__table__
COUNTER = FeedCounter.__table__

#: Takes ``n`` numbers from the counter and returns the last. Its row lock is held until the
#: transaction ends, so the next writer gets its numbers only after this one has committed.
RESERVE = (
    COUNTER.update()
    .where(COUNTER.c.id == 1)
    .values(seq=COUNTER.c.seq + bindparam("n"))
    .returning(COUNTER.c.seq)
)

#: PostgreSQL does both in one statement, so the row lock is held for the COMMIT alone:
#: ``WITH counter AS (UPDATE ... RETURNING seq) INSERT INTO changes SELECT ... FROM counter
#: JOIN json_to_recordset(:changes)``; each change carries its place ``n`` in the batch.
_COUNTER = RESERVE.cte("counter")
_BATCH = (
    func.json_to_recordset(bindparam("changes", type_=JSON))
    .table_valued(
        column("n", Integer),
        column("type", String),
        column("resource", String),
        column("data", JSON),
    )
    .render_derived(name="batch", with_types=True)
)
APPEND_POSTGRESQL = (
    insert(CHANGES)
    .from_select(
        ["seq", "at", "type", "resource", "data"],
        select(
            _COUNTER.c.seq - bindparam("n") + 1 + _BATCH.c.n,
            bindparam("at", type_=UTCDateTime),
            _BATCH.c.type,
            _BATCH.c.resource,
            _BATCH.c.data,
        )
        .select_from(_COUNTER)
        .join(_BATCH, true()),
    )
    .add_cte(_COUNTER)
    .execution_options(preserve_rowcount=True)  # append_changes checks it
)

#: A page of the feed: one range scan of the primary key.
PAGE = (
    select(CHANGES)
    .where(CHANGES.c.seq > bindparam("after"))
    .order_by(CHANGES.c.seq)
    .limit(bindparam("limit"))
)


def append_changes(session: Session, changes: list[dict], *, commit=False):
    """Number ``changes`` (dicts of type, resource, data) and insert them, in this transaction.

    One statement on PostgreSQL; two on SQLite, whose writers take turns anyway. With ``commit``
    (the transaction has nothing else to do), PostgreSQL gets the COMMIT in the same message,
    so the counter row is locked for no round trip (``myservice.data.roundtrips``); SQLite's
    writer holds its lock from BEGIN IMMEDIATE on, and commits as usual.
    """
    at, count = utcnow(), len(changes)
    if session.get_bind().dialect.name == "postgresql":
        batch = [{"n": n, **change} for n, change in enumerate(changes)]
        parameters = {"n": count, "at": at, "changes": batch}
        if commit:
            inserted = execute_and_commit(session, APPEND_POSTGRESQL, parameters)
        else:
            inserted = session.execute(APPEND_POSTGRESQL, parameters)
        if inserted.rowcount != count:  # no feed_counter row: never commit a write without them
            raise RuntimeError("the feed_counter row is missing: run alembic upgrade head")
    else:
        first = session.execute(RESERVE, {"n": count}).scalar_one() - count + 1
        rows = [{"seq": first + n, "at": at, **change} for n, change in enumerate(changes)]
        session.execute(CHANGES.insert(), rows)
    mark_changed(session)


def erase_data(session: Session, resource: str, types) -> int:
    """Set to null the ``data`` of the changes of ``resource`` whose type is one of ``types``;
    how many had data. Each entry stays, with its seq, time, type and resource. A scan of the
    feed (``resource`` has no index): for an operator's rare erasure request, not a request's."""
    erased = session.execute(
        update(CHANGES)
        .where(CHANGES.c.resource == resource, CHANGES.c.type.in_(types))
        .where(CHANGES.c.data.is_not(None))
        .values(data=null())
    ).rowcount
    mark_changed(session)
    return erased


def names(session: Session, resource: str) -> bool:
    """Whether any change of the feed is about ``resource``."""
    query = select(CHANGES.c.seq).where(CHANGES.c.resource == resource).limit(1)
    return session.execute(query).first() is not None
