"""Names nobody has taken, and users and groups made through the API by either client
(``tests.support.client.created``): WebTest's ``TestApp`` or a real ``Server``.

A real server keeps what it commits for the whole module, so what tests create there needs a
name of its own; in process, where every test's rows are rolled back, a test may name its rows.
"""

import uuid

from tests.support.client import created

#: A user as the contract's examples show her.
ADA = {"username": "Ada", "email": "Ada@Example.com", "full_name": "Ada Lovelace"}


def unique(prefix):
    """A name nobody has taken yet."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def user_body(username=None, **fields):
    """A new user's body: ``username`` (a name nobody has taken, unless given), an email made
    from it, and ``fields`` (which may name another email)."""
    username = username or unique("user")
    return {"username": username, "email": f"{username}@example.org", **fields}


def new_user(client, username=None, **fields):
    """A user created through ``client`` from ``user_body(username, **fields)``: its JSON."""
    return created(client, "/users", user_body(username, **fields))


def new_users(client, count):
    """The ids of ``count`` new users, created in one POST /users/bulk."""
    body = {"users": [user_body() for _ in range(count)]}
    return [user["id"] for user in created(client, "/users/bulk", body)["items"]]


def new_group(client, name=None, **fields):
    """A group created through ``client``, named ``name`` (a name nobody has taken, unless
    given), with ``fields``: its JSON."""
    return created(client, "/groups", {"name": name or unique("group"), **fields})
