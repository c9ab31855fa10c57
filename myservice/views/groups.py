"""/groups: create, list, read, update (JSON merge patch) and delete groups."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field
from pyramid.httpexceptions import HTTPConflict, HTTPNoContent
from pyramid.view import view_config
from sqlalchemy import func, select

from ..apidoc import IF_MATCH, IF_NONE_MATCH, Reply, links, operation
from ..changes import record_change
from ..idempotency import IDEMPOTENCY_KEY, idempotent
from ..models import Group, delete_group_and_members
from ..pagination import PageParams, page
from ..validation import (
    JSON_OR_MERGE_PATCH,
    Body,
    MergePatch,
    Representation,
    Stated,
    Text,
    integer,
    validate_query,
)
from .resource import (
    apply_patch,
    create,
    find_for_write,
    read,
    read_patch,
    record_deleted,
    record_updated,
    respond_unless_not_modified,
)

# -- schemas -------------------------------------------------------------------------------

Name = Annotated[Text, Field(min_length=1, max_length=64)]
#: ``null`` means the default, ``""`` (as for a user's full_name).
Description = Annotated[
    Text,
    BeforeValidator(lambda value: "" if value is None else value),
    Field(max_length=500),
    Stated(nullable=True),
]
#: ``null`` means no limit.
MaxMembers = integer(ge=0, le=2**31 - 1) | None


class GroupCreate(Body):
    name: Name
    description: Description = ""
    max_members: MaxMembers = None


class GroupPatch(MergePatch):
    """A JSON merge patch: absent fields stay as they are; ``max_members: null`` lifts the limit."""

    name: Name = None  # null is invalid: a group always has one
    description: Description = None
    max_members: MaxMembers = None


class GroupOut(Representation):
    id: int
    name: str
    description: str
    max_members: int | None
    member_count: int
    created_at: datetime
    updated_at: datetime
    version: int


class GroupPage(BaseModel):
    items: list[GroupOut]
    next_cursor: str | None


class GroupFilters(PageParams):
    name: Text | None = None


# -- views ---------------------------------------------------------------------------------

#: Reads select rows of the table, not entities (see ``resource.read``).
GROUPS = Group.__table__


#: The operations on one group, which a response naming it links to.
ON_A_GROUP = ("get_group", "update_group", "delete_group", "list_members")


@view_config(
    route_name="groups",
    request_method="POST",
    renderer="json",
    decorator=idempotent,
    permission="write",
)
@operation(
    "Create a group",
    body=GroupCreate,
    headers=[IDEMPOTENCY_KEY],
    responses={
        201: Reply(
            "created",
            GroupOut,
            headers=("Location", "ETag"),
            links=links(*ON_A_GROUP, "join_group", id="$response.body#/id"),
        )
    },
    problems=(409,),
)
def create_group(request):
    return create(request, Group, GroupCreate, GroupOut, "group")


@view_config(route_name="groups", request_method="GET", renderer="json", permission="read")
@operation(
    "List groups by id, filtered by exact name (any case)",
    query=GroupFilters,
    responses={200: Reply("a page", GroupPage, optional=("Link",))},
)
def list_groups(request):
    params = validate_query(request, GroupFilters)
    query = select(GROUPS)
    if params.name is not None:
        query = query.where(func.lower(GROUPS.c.name) == func.lower(params.name))
    groups, next_cursor = page(request, query, GROUPS.c.id, params)
    return GroupPage(items=groups, next_cursor=next_cursor)


@view_config(route_name="group", request_method="GET", renderer="json", permission="read")
@operation(
    "Read a group",
    headers=[IF_NONE_MATCH],
    responses={200: Reply("the group", GroupOut, headers=("ETag",))},
)
def get_group(request):
    return respond_unless_not_modified(request, read(request, Group), GroupOut)


@view_config(route_name="group", request_method="PATCH", renderer="json", permission="write")
@operation(
    "Update a group (JSON merge patch)",
    description="409 when the name is taken, or max_members would go below member_count",
    body=GroupPatch,
    media_types=JSON_OR_MERGE_PATCH,
    headers=[IF_MATCH],
    responses={200: Reply("the updated group", GroupOut, headers=("ETag",))},
    problems=(409,),
)
def update_group(request):
    group, changes = read_patch(request, Group, GroupPatch)  # locked: joins and leaves wait
    limit = changes.get("max_members", group.max_members)
    if limit is not None and limit < group.member_count:
        raise HTTPConflict(f"group {group.id} has {group.member_count} members, more than {limit}")
    return apply_patch(request, group, changes, GroupOut)


@view_config(route_name="group", request_method="DELETE", permission="write")
@operation(
    "Delete a group and its memberships",
    headers=[IF_MATCH],
    responses={204: Reply("deleted")},
)
def delete_group(request):
    """Its memberships go with it (ON DELETE CASCADE)."""
    group = find_for_write(request, Group)
    for user_id in delete_group_and_members(request.dbsession, group):
        record_change(request, "membership.removed", member_path(request, group.id, user_id))
    record_deleted(request, group)
    return HTTPNoContent()


def member_path(request, group_id, user_id):
    return request.route_path("group_member", id=group_id, user_id=user_id)


def record_joined(request, group, user_id, membership):
    """``membership.added``, then the group with its new count (a new version of it)."""
    record_change(request, "membership.added", member_path(request, group.id, user_id), membership)
    record_updated(request, group, GroupOut.model_validate(group))


def record_left(request, group, user_id):
    """``membership.removed``, then the group with its new count (a new version of it)."""
    record_change(request, "membership.removed", member_path(request, group.id, user_id))
    record_updated(request, group, GroupOut.model_validate(group))
