"""Groups and memberships.

A group keeps its ``member_count`` on its own row, changed in the same transaction as the
membership row it counts; the CHECK constraints make the database refuse a count that is
negative or above ``max_members``, whatever a request does.
"""

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, Session, mapped_column

from myservice.data.models.meta import Base, BigId, UTCDateTime, Versioned, held_elsewhere, utcnow


class Group(Versioned, Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))  # as given; unique case-insensitively
    description: Mapped[str] = mapped_column(String(500), default="")
    max_members: Mapped[int | None] = mapped_column()  # None: unlimited
    member_count: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        Index("uq_groups_name_lower", func.lower(name), unique=True),
        CheckConstraint("max_members >= 0", name="max_members_not_negative"),
        CheckConstraint("member_count >= 0", name="member_count_not_negative"),
        CheckConstraint(
            "max_members IS NULL OR member_count <= max_members", name="member_count_within_max"
        ),
        {"sqlite_autoincrement": True},  # never reuse a deleted group's id
    )
    #: The fields no two groups may share.
    unique_fields = ("name",)

    def taken(self, session: Session) -> dict[str, str]:
        """This group's name where another group holds it in any case (as the index compares)."""
        held = held_elsewhere(
            session,
            {"name": func.lower(Group.name) == func.lower(self.name)},
            other_than=None if self.id is None else Group.id != self.id,
        )
        return {name: getattr(self, name) for name in held}


class Membership(Base):
    """A user in a group. The primary key serves "members of a group"; the (user_id, group_id)
    index serves "groups of a user"."""

    __tablename__ = "memberships"

    # Deleting a group takes its memberships with it (its count goes with it). Deleting a user
    # must decrement the counts of its groups first, which the service does; RESTRICT makes a
    # deletion that skipped that step fail instead of leaving the counts wrong.
    group_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_memberships_user_id_group_id", "user_id", "group_id"),)
