"""What the contract (docs/api.md) says that tests of several resources check."""

import re
from datetime import datetime

#: The members of a user, as the contract lists them.
USER_FIELDS = {"id", "username", "email", "full_name", "created_at", "updated_at", "version"}

#: The members of a group, as the contract lists them.
GROUP_FIELDS = {
    "id",
    "name",
    "description",
    "max_members",
    "member_count",
    "created_at",
    "updated_at",
    "version",
}

#: The API's rule for an X-Request-ID the server echoes (and so for one it generates).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def instant(timestamp):
    """An API timestamp as a datetime, to compare: as text "...:37Z" sorts after "...:37.5Z"."""
    return datetime.fromisoformat(timestamp)
