"""The tables. Import models from here so that every mapper is configured."""

from .change import Change, FeedCounter
from .idempotency import IdempotencyKey
from .meta import MAX_ID, Base
from .user import User, insert_user, taken_fields

__all__ = [
    "MAX_ID",
    "Base",
    "Change",
    "FeedCounter",
    "IdempotencyKey",
    "User",
    "insert_user",
    "taken_fields",
]
