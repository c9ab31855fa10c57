"""/groups: create, list, read, update (JSON merge patch) and delete groups."""

from pyramid.httpexceptions import HTTPConflict, HTTPNoContent
from pyramid.view import view_config
from sqlalchemy import select

from myservice.api.apidoc import IF_MATCH, IF_NONE_MATCH, Reply, links, operation
from myservice.api.changes import record_change
from myservice.api.idempotency import IDEMPOTENCY_KEY, idempotent
from myservice.api.pagination import page
from myservice.api.resource import (
    apply_patch,
    create,
    find_for_write,
    member_path,
    read,
    read_patch,
    record_deleted,
    respond_unless_not_modified,
)

#: Reads select rows of the table, not entities (see ``resource.read``).
from myservice.api.schemas import (
    ON_A_GROUP,
    GroupCreate,
    GroupFilters,
    GroupOut,
    GroupPage,
    GroupPatch,
)
from myservice.data.models import Group, delete_group_and_members
from myservice.data.models.meta import caseless
from myservice.edge.jsonbody import JSON_OR_MERGE_PATCH
from myservice.edge.validation import validate_query

GROUPS = Group.__table__


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
        query = query.where(GROUPS.c.name_key == caseless(params.name))
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
