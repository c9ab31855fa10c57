from collections.abc import Sequence

from sqlalchemy import Index, String, func, insert, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from myservice.data.models.meta import Base, BigId, Versioned, held_elsewhere, utcnow


class User(Versioned, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Stored lower-cased. Unique and given for every new row, so it matches the rows RETURNING
    # gives back to the rows of a multi-row INSERT: SQLite, which does not keep RETURNING in
    # order, needs no statement per row either.
    username: Mapped[str] = mapped_column(String(32), unique=True, insert_sentinel=True)
    email: Mapped[str] = mapped_column(String(254))  # as given; unique case-insensitively
    full_name: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (
        Index("uq_users_email_lower", func.lower(email), unique=True),
        {"sqlite_autoincrement": True},  # never reuse a deleted user's id
    )
    #: The fields no two users may share.
    unique_fields = ("username", "email")

    def taken(self, session: Session) -> dict[str, str]:
        """This user's username and email where another user holds them, compared the way
        the unique indexes compare them (email through SQL ``lower()``)."""
        held = held_elsewhere(
            session,
            {
                "username": User.username == self.username,
                "email": func.lower(User.email) == func.lower(self.email),
            },
            other_than=None if self.id is None else User.id != self.id,
        )
        return {name: getattr(self, name) for name in held}


def clashes(session: Session, users: Sequence[dict]) -> dict[int, str]:
    """For each new user (``username``, ``email``) that cannot be stored: its index and the
    field (``username`` first) that a stored user or an earlier new user already holds.

    A user that clashes holds nothing: a later one with the same email is not its duplicate.
    Emails are compared lower-cased, as the unique index compares them.
    """
    usernames = {user["username"] for user in users}
    emails = {user["email"].lower() for user in users}
    stored = session.execute(
        select(User.username, func.lower(User.email)).where(
            or_(User.username.in_(usernames), func.lower(User.email).in_(emails))
        )
    ).all()
    held = {"username": {row[0] for row in stored}, "email": {row[1] for row in stored}}
    found = {}
    for index, user in enumerate(users):
        values = {"username": user["username"], "email": user["email"].lower()}
        field = next((name for name, value in values.items() if value in held[name]), None)
        if field is not None:
            found[index] = field
            continue
        for name, value in values.items():
            held[name].add(value)
    return found


def insert_users(session: Session, users: Sequence[dict]) -> list[User]:
    """Store new users (fields as validated by the create schema) with one multi-row INSERT
    ... RETURNING, and return them in the order given."""
    if not users:
        return []
    now = utcnow()
    rows = [{**user, "created_at": now, "updated_at": now, "version": 1} for user in users]
    statement = insert(User).returning(User, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))
