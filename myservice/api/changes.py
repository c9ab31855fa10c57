"""The change feed: ``GET /changes``, every committed write in commit order.

Every view that writes calls ``record_change`` once per change, after the write (and after its
flush, so that ``data`` is final), in the request that makes it::

    record_change(request, "user.created", request.route_path("user", id=user.id), UserOut(...))
    record_change(request, "membership.removed", f"/groups/{group_id}/members/{user_id}")

- ``type``: one of ``TYPES``;
- ``resource``: the resource's path;
- ``data``: the resource as the write left it, the same JSON as its GET: a pydantic model (its
  ``...Out`` schema) or a JSON-able dict; ``None`` (the default) for ``*.deleted`` and
  ``membership.removed``.

``data`` is serialised at once and the change is buffered on the request's session. Just before
that session commits, the buffered changes are numbered and inserted in one go, in the same
transaction as the write: a request that aborts (any 4xx/5xx, a raise, a replayed attempt)
leaves none. Why so late, and how that orders the feed: docs/design.md.
"""

from datetime import datetime
from typing import Literal, get_args

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event

from myservice.api.apidoc import Reply, operation
from myservice.data.db import RequestSession
from myservice.data.models import MAX_ID, records
from myservice.data.models.change import PAGE, append_changes
from myservice.edge.validation import Query, QueryInt, validate_query

ChangeType = Literal[
    "user.created",
    "user.updated",
    "user.deleted",
    "group.created",
    "group.updated",
    "group.deleted",
    "membership.added",
    "membership.removed",
]
TYPES = frozenset(get_args(ChangeType))

#: Where a session keeps the changes recorded in its transaction.
PENDING = "pending_changes"


def change(type: str, resource: str, data=None) -> dict:
    """A change as ``append_changes`` stores it, ``data`` already in its JSON form."""
    if type not in TYPES:
        raise ValueError(f"not a change type: {type!r}")
    return {"type": type, "resource": resource, "data": pydantic_core.to_jsonable_python(data)}


def record_change(request, type: str, resource: str, data=None):
    """Append a change to the feed when (and only if) this request's transaction commits."""
    recorded = change(type, resource, data)  # a bad type fails here, before the session
    request.dbsession.info.setdefault(PENDING, []).append(recorded)


@event.listens_for(RequestSession, "before_commit")
def write_pending_changes(session):
    """The session is about to COMMIT: number and insert the changes it has recorded, in the
    message that carries the COMMIT (``append_changes``), after the last flush of the session's
    own changes (SQLAlchemy would flush them after this hook, and they would arrive too late).

    Not when a SAVEPOINT is released (SQLAlchemy fires ``before_commit`` then too): the counter
    row's lock would then be held from there to the COMMIT.
    """
    if session.in_nested_transaction():
        return
    pending = session.info.pop(PENDING, None)
    if pending:
        session.flush()
        append_changes(session, pending, commit=True)


# -- GET /changes ----------------------------------------------------------------------------


class ChangeParams(Query):
    after: QueryInt = Field(0, ge=0, le=MAX_ID)
    limit: QueryInt = Field(100, ge=1, le=1000)


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    type: ChangeType
    resource: str
    data: dict | None


class ChangePage(BaseModel):
    items: list[ChangeOut]
    next_after: int


@operation(
    "Every committed change after a seq, oldest first, in commit order",
    query=ChangeParams,
    responses={200: Reply("a page; next_after is the after of the next poll", ChangePage)},
)
def list_changes(request):
    """The changes after ``after``, oldest first: one range scan of the primary key."""
    params = validate_query(request, ChangeParams)
    rows = records(request.dbsession.execute(PAGE, {"after": params.after, "limit": params.limit}))
    return ChangePage(items=rows, next_after=rows[-1]["seq"] if rows else params.after)


def includeme(config):
    config.add_route("changes", "/changes")
    config.add_view(
        list_changes, route_name="changes", request_method="GET", renderer="json", permission="read"
    )
