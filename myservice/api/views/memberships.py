"""/groups/{id}/members and /users/{id}/groups: join, leave, and both listings."""

from pyramid.httpexceptions import HTTPConflict, HTTPNoContent, HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import select

from myservice.api.apidoc import Reply, links, operation
from myservice.api.pagination import PageParams, page
from myservice.api.resource import find, read, record_joined, record_left
from myservice.api.schemas import GroupPage, MembershipOut, UserPage
from myservice.data.models import (
    KEY_SHARE,
    Group,
    GroupFull,
    Membership,
    User,
    add_member,
    remove_member,
)
from myservice.edge.validation import validate_query

#: What a membership links to: itself, its group and its user.
ON_A_MEMBERSHIP = {
    **links("leave_group", id="$response.body#/group_id", user_id="$response.body#/user_id"),
    **links("get_group", "list_members", id="$response.body#/group_id"),
    **links("get_user", "list_user_groups", id="$response.body#/user_id"),
}


@view_config(route_name="group_member", request_method="PUT", renderer="json", permission="write")
@operation(
    "Add the user to the group",
    responses={
        201: Reply("added", MembershipOut, links=ON_A_MEMBERSHIP),
        200: Reply("already a member; nothing changed", MembershipOut, links=ON_A_MEMBERSHIP),
    },
    problems=(409,),
    description="404 when the group or the user does not exist; 409 when the group is full",
)
def join_group(request):
    """201 when the user joins; 200 when it was a member already (full group or not)."""
    # The lock order of myservice.data.models.membership: the user, then the group.
    user = find(request, User, key="user_id", for_update=KEY_SHARE)
    group = find(request, Group, for_update=True)
    try:
        membership, created = add_member(request.dbsession, group, user)
    except GroupFull:
        raise HTTPConflict(f"group {group.id} is full ({group.max_members} members)") from None
    request.response.status_code = 201 if created else 200
    joined = MembershipOut.model_validate(membership)
    if created:  # joining again changes nothing and appends nothing
        record_joined(request, group, user.id, joined)
    return joined


@view_config(route_name="group_member", request_method="DELETE", permission="write")
@operation(
    "Remove the user from the group",
    description="404 when the group or the user does not exist, or the user is not a member",
    responses={204: Reply("removed")},
)
def leave_group(request):
    user = find(request, User, key="user_id", for_update=KEY_SHARE)
    group = find(request, Group, for_update=True)
    if not remove_member(request.dbsession, group, user):
        raise HTTPNotFound(f"user {user.id} is not a member of group {group.id}")
    record_left(request, group, user.id)
    return HTTPNoContent()


@view_config(route_name="group_members", request_method="GET", renderer="json", permission="read")
@operation(
    "The group's members (users), by id",
    query=PageParams,
    responses={200: Reply("a page", UserPage, optional=("Link",))},
)
def list_members(request):
    """The group's members as users, by user id (a range of the memberships' primary key)."""
    users, next_cursor = related_page(request, Group, User, Membership.user_id)
    return UserPage(items=users, next_cursor=next_cursor)


@view_config(route_name="user_groups", request_method="GET", renderer="json", permission="read")
@operation(
    "The user's groups, by id",
    query=PageParams,
    responses={200: Reply("a page", GroupPage, optional=("Link",))},
)
def list_user_groups(request):
    """The user's groups, by group id (a range of the (user_id, group_id) index)."""
    groups, next_cursor = related_page(request, User, Group, Membership.group_id)
    return GroupPage(items=groups, next_cursor=next_cursor)


def related_page(request, owner_model, listed_model, listed_key):
    """A page of the ``listed_model`` rows that share a membership with the URL's
    ``owner_model`` row (404 when there is none), keyed by the membership's own column."""
    params = validate_query(request, PageParams)  # a bad request is 400 before any lookup
    owner = read(request, owner_model)
    owner_key = Membership.user_id if listed_key is Membership.group_id else Membership.group_id
    listed = listed_model.__table__
    query = select(listed).join(Membership, listed_key == listed.c.id)
    return page(request, query.where(owner_key == owner.id), listed_key, params)
