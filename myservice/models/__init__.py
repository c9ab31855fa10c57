"""The tables. Import models from here so that every mapper is configured."""

from .change import Change, FeedCounter
from .group import Group, Membership
from .idempotency import IdempotencyKey
from .maintenance import ServiceMode
from .membership import (
    KEY_SHARE,
    GroupFull,
    add_member,
    delete_group_and_members,
    delete_user,
    remove_member,
)
from .meta import MAX_ID, Base, insert_new, select_by_id
from .user import User, clashes, insert_users

__all__ = [
    "KEY_SHARE",
    "MAX_ID",
    "Base",
    "Change",
    "FeedCounter",
    "Group",
    "GroupFull",
    "IdempotencyKey",
    "Membership",
    "ServiceMode",
    "User",
    "add_member",
    "clashes",
    "delete_group_and_members",
    "delete_user",
    "insert_new",
    "insert_users",
    "remove_member",
    "select_by_id",
]
