"""Joining, leaving, and deleting a user with its memberships: every count kept right.

Lock order, the same in every request, so that concurrent requests queue instead of
deadlocking: first the user row, then group rows in ascending id order, then membership rows.

- Joining or leaving takes the user row FOR KEY SHARE (a user being deleted cannot gain or
  lose memberships meanwhile; other joins of the user are not blocked), then the group row FOR
  UPDATE (joins and leaves of one group take turns, so the count and the check against
  ``max_members`` read the truth), then writes the membership row and the count.
- Deleting a user takes the user row FOR UPDATE, then its groups FOR UPDATE by id.
- PATCH and DELETE of a group take the group row FOR UPDATE.

SQLite has no row locks: every writing request holds the database's write lock from BEGIN
(``BEGIN IMMEDIATE``, see ``myservice.data.engine``), so writers run one at a time.
"""

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from myservice.data.models.group import Group, Membership
from myservice.data.models.user import User

#: The user row lock a membership change takes: it conflicts with deleting the user (and with
#: the FOR UPDATE that PATCH and DELETE take), not with other membership changes.
KEY_SHARE = {"read": True, "key_share": True}


class GroupFull(Exception):
    """The group already has ``max_members`` members."""


def add_member(session: Session, group: Group, user: User) -> tuple[Membership, bool]:
    """The membership of ``user`` in ``group`` (locked), and whether it is new.

    An existing membership is returned as it is, full group or not; a new one counts.
    """
    existing = session.get(Membership, (group.id, user.id))
    if existing is not None:
        return existing, False
    if group.max_members is not None and group.member_count >= group.max_members:
        raise GroupFull(group.max_members)
    membership = Membership(group_id=group.id, user_id=user.id)
    session.add(membership)
    group.member_count += 1  # a new version of the group: its count is part of it
    session.flush()
    return membership, True


def remove_member(session: Session, group: Group, user: User) -> bool:
    """Remove ``user`` from ``group`` (locked); False when it was not a member."""
    removed = session.execute(
        delete(Membership).where(Membership.group_id == group.id, Membership.user_id == user.id)
    ).rowcount
    if removed:
        group.member_count -= 1
        session.flush()
    return bool(removed)


def delete_group_and_members(session: Session, group: Group) -> list[int]:
    """Delete ``group`` (locked FOR UPDATE) and its memberships; the ids of its members."""
    members = session.scalars(
        select(Membership.user_id)
        .where(Membership.group_id == group.id)
        .order_by(Membership.user_id)
    ).all()
    session.delete(group)  # ON DELETE CASCADE removes the memberships
    session.flush()
    return list(members)


def delete_user(session: Session, user: User) -> list[Group]:
    """Delete ``user`` (locked FOR UPDATE), its memberships and one from each group's count;
    the groups it was a member of."""
    groups = session.scalars(
        select(Group)
        .where(Group.id.in_(select(Membership.group_id).where(Membership.user_id == user.id)))
        .order_by(Group.id)
        .with_for_update()
    ).all()
    for group in groups:
        group.member_count -= 1
    session.execute(delete(Membership).where(Membership.user_id == user.id))
    session.delete(user)
    session.flush()
    return list(groups)
