"""``myservice-erase INI USER_ID [USER_ID ...]``: erase deleted users' data from the change feed.

An erasure request under data-protection law, for a user already deleted (``DELETE
/users/{id}``): the ``data`` of its ``user.created`` and ``user.updated`` changes (its username,
email and full name as each change left them) becomes null. The entries stay, with their seq,
time, type and resource, so the feed's order, its seqs and a client's ``after`` are unchanged.
The stored responses of ``Idempotency-Key`` requests that created the user (alone or in a bulk
create) are forgotten too, as if their keys had expired. Clients that mirrored the feed before
keep what they read: the operator tells them.

One transaction per user. Like every tool that writes, it refuses while the service is read-only
for maintenance unless given ``--during-maintenance`` (``myservice.cli.command``). Exit status 0;
1 when a user still exists or no change names it (nothing is erased for that user); 2 for bad
arguments; 75 in maintenance mode. ``DATABASE_URL`` overrides the ini's
database, as it does for the app.
"""

import json
import sys

from myservice.cli.command import (
    add_maintenance_override,
    console_script,
    tool_parser,
    tool_session,
)
from myservice.data.models import User
from myservice.data.models.change import erase_data, names
from myservice.data.models.idempotency import forget_keys, stored_responses
from myservice.data.scripts import opened_engine

#: The changes whose ``data`` is the user as the change left it.
WITH_DATA = ("user.created", "user.updated")


class Refused(Exception):
    """This user cannot be erased; the message says why."""


@console_script("myservice-erase")
def main(argv=None):
    parser = tool_parser("myservice-erase", __doc__.splitlines()[0])
    parser.add_argument("user_ids", metavar="USER_ID", type=int, nargs="+")
    add_maintenance_override(parser)
    args = parser.parse_args(argv)
    status = 0
    with opened_engine(args.ini) as engine:
        for user_id in args.user_ids:
            try:
                with tool_session(engine, during_maintenance=args.during_maintenance) as session:
                    changes, keys = erase_user(session, user_id)
            except Refused as refusal:
                print(f"myservice-erase: {refusal}", file=sys.stderr)
                status = 1
                continue
            print(
                f"user {user_id}: erased the data of {counted(changes, 'change')}, "
                f"forgot {counted(keys, 'idempotency key')}"
            )
    return status


def counted(number, thing):
    return f"{number} {thing}{'' if number == 1 else 's'}"


def erase_user(session, user_id):
    """Erase the deleted user ``user_id``'s data: (changes erased, idempotency keys forgotten)."""
    resource = f"/users/{user_id}"
    if session.get(User, user_id) is not None:
        raise Refused(f"user {user_id} exists: delete it first (DELETE {resource}), then erase it")
    if not names(session, resource):
        raise Refused(f"no change names user {user_id}: nothing to erase")
    changes = erase_data(session, resource, WITH_DATA)
    keys = [
        (token_id, key)
        for token_id, key, headers, body in stored_responses(session)
        if shows_user(headers, body, user_id, resource)
    ]
    return changes, forget_keys(session, keys)


def shows_user(headers, body, user_id, resource):
    """Whether a stored response shows the user: a create's (its Location), or a bulk
    create's (one of its items)."""
    if (headers or {}).get("Location", "").endswith(resource):
        return True
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        return False
    items = document.get("items") if isinstance(document, dict) else None
    return isinstance(items, list) and any(
        isinstance(item, dict) and item.get("id") == user_id and "email" in item for item in items
    )


if __name__ == "__main__":
    sys.exit(main())
