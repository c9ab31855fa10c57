"""The tables. Import models from here so that every mapper is configured, and so that
``Base.metadata`` holds every table (alembic compares it with the database)."""

from myservice.data.models.change import Change, FeedCounter
from myservice.data.models.group import Group, Membership
from myservice.data.models.idempotency import IdempotencyKey
from myservice.data.models.maintenance import ServiceMode
from myservice.data.models.membership import (
    KEY_SHARE,
    GroupFull,
    add_member,
    delete_group_and_members,
    delete_user,
    remove_member,
)
from myservice.data.models.meta import MAX_ID, Base, insert_new, records, select_by_id
from myservice.data.models.token import ApiToken
from myservice.data.models.user import User, clashes, insert_users

__all__ = [
    "KEY_SHARE",
    "MAX_ID",
    "ApiToken",
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
    "records",
    "remove_member",
    "select_by_id",
]
