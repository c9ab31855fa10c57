"""The change feed's tables: one row per committed change, and the counter that numbers them.

``changes.seq`` is not an autoincrement: ``append_changes`` takes it from the one row of
``feed_counter`` in the writing transaction, which orders the commits (see docs/feed.md).
"""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, Integer, String, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..db import mark_changed
from .meta import Base, BigId, UTCDateTime, utcnow


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

#: A page of the feed: one range scan of the primary key.
PAGE = (
    select(CHANGES)
    .where(CHANGES.c.seq > bindparam("after"))
    .order_by(CHANGES.c.seq)
    .limit(bindparam("limit"))
)


def append_changes(session: Session, changes: list[dict]):
    """Number ``changes`` (dicts of type, resource, data) and insert them, in this transaction."""
    last = session.execute(RESERVE, {"n": len(changes)}).scalar_one()
    first, at = last - len(changes) + 1, utcnow()
    rows = [{"seq": first + n, "at": at, **change} for n, change in enumerate(changes)]
    session.execute(CHANGES.insert(), rows)
    mark_changed(session)
