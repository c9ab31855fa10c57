from datetime import datetime

from sqlalchemy import Index, String, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..db import mark_changed
from .meta import Base, BigId, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)  # stored lower-cased
    email: Mapped[str] = mapped_column(String(254))  # as given; unique case-insensitively
    full_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime,
        default=lambda context: context.get_current_parameters()["created_at"],
        onupdate=utcnow,
    )
    version: Mapped[int] = mapped_column()

    __table_args__ = (
        Index("uq_users_email_lower", func.lower(email), unique=True),
        {"sqlite_autoincrement": True},  # never reuse a deleted user's id
    )
    # Every UPDATE and DELETE says "WHERE version = <the version we read>": a concurrent
    # change makes it match no row, and SQLAlchemy raises StaleDataError, which
    # zope.sqlalchemy reports as retryable, so pyramid_retry replays the request on fresh data.
    __mapper_args__ = {"version_id_col": version}


def taken_fields(session: Session, username: str, email: str, *, other_than: int | None = None):
    """The values of ``username`` and ``email`` that a user other than ``other_than`` holds.

    Compared the way the unique indexes compare them (email through SQL ``lower()``).
    """
    same_username = User.username == username
    same_email = func.lower(User.email) == func.lower(email)
    query = select(same_username, same_email).where(or_(same_username, same_email))
    if other_than is not None:
        query = query.where(User.id != other_than)
    with session.no_autoflush:
        holders = session.execute(query).all()
    taken = {}
    if any(holder[0] for holder in holders):
        taken["username"] = username
    if any(holder[1] for holder in holders):
        taken["email"] = email
    return taken


#: ``INSERT ... ON CONFLICT DO NOTHING RETURNING *`` per dialect: a taken username or email
#: makes it return no row instead of raising, so the transaction stays usable.
_INSERT_USER = {
    name: insert(User.__table__).on_conflict_do_nothing().returning(*User.__table__.c)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def insert_user(session: Session, values: dict):
    """Insert a user in one statement and return its row, or ``None`` when the username or email
    is taken (by a committed user, or by a concurrent insert that then commits).

    Core, not the unit of work: an INSERT needs no identity map, and the flush cost three times
    as much as the statement. zope.sqlalchemy does not see Core writes, hence ``mark_changed``.
    """
    statement = _INSERT_USER[session.get_bind().dialect.name]
    user = session.execute(statement, {**values, "version": 1}).first()
    mark_changed(session)
    return user
