"""/users: create, list, read, update (JSON merge patch) and delete users."""

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config
from sqlalchemy import select

from myservice.api.apidoc import IF_MATCH, IF_NONE_MATCH, Reply, links, operation
from myservice.api.idempotency import IDEMPOTENCY_KEY, idempotent
from myservice.api.pagination import page
from myservice.api.resource import (
    apply_patch,
    create,
    find_for_write,
    read,
    read_patch,
    record_deleted,
    record_left,
    respond_unless_not_modified,
)

#: Reads select rows of the table, not entities (see ``resource.read``).
from myservice.api.schemas import ON_A_USER, UserCreate, UserFilters, UserOut, UserPage, UserPatch
from myservice.data.models import User
from myservice.data.models import membership as memberships
from myservice.data.models.meta import caseless
from myservice.edge.jsonbody import JSON_OR_MERGE_PATCH
from myservice.edge.validation import validate_query

USERS = User.__table__


@view_config(
    route_name="users",
    request_method="POST",
    renderer="json",
    decorator=idempotent,
    permission="write",
)
@operation(
    "Create a user",
    body=UserCreate,
    headers=[IDEMPOTENCY_KEY],
    responses={
        201: Reply(
            "created",
            UserOut,
            headers=("Location", "ETag"),
            links=links(*ON_A_USER, id="$response.body#/id"),
        )
    },
    problems=(409,),
)
def create_user(request):
    return create(request, User, UserCreate, UserOut, "user")


@view_config(route_name="users", request_method="GET", renderer="json", permission="read")
@operation(
    "List users by id, filtered by exact username or email (any case)",
    query=UserFilters,
    responses={200: Reply("a page", UserPage, optional=("Link",))},
)
def list_users(request):
    params = validate_query(request, UserFilters)
    query = select(USERS)
    if params.username is not None:
        query = query.where(USERS.c.username == params.username.lower())
    if params.email is not None:
        query = query.where(USERS.c.email_key == caseless(params.email))
    users, next_cursor = page(request, query, USERS.c.id, params)
    return UserPage(items=users, next_cursor=next_cursor)


@view_config(route_name="user", request_method="GET", renderer="json", permission="read")
@operation(
    "Read a user",
    headers=[IF_NONE_MATCH],
    responses={200: Reply("the user", UserOut, headers=("ETag",))},
)
def get_user(request):
    return respond_unless_not_modified(request, read(request, User), UserOut)


@view_config(route_name="user", request_method="PATCH", renderer="json", permission="write")
@operation(
    "Update a user (JSON merge patch)",
    body=UserPatch,
    media_types=JSON_OR_MERGE_PATCH,
    headers=[IF_MATCH],
    responses={200: Reply("the updated user", UserOut, headers=("ETag",))},
    problems=(409,),
)
def update_user(request):
    user, changes = read_patch(request, User, UserPatch)
    return apply_patch(request, user, changes, UserOut)


@view_config(route_name="user", request_method="DELETE", permission="write")
@operation(
    "Delete a user and its memberships",
    headers=[IF_MATCH],
    responses={204: Reply("deleted")},
)
def delete_user(request):
    """Also removes the user's memberships, one from each of its groups' counts."""
    user = find_for_write(request, User)
    for group in memberships.delete_user(request.dbsession, user):
        record_left(request, group, user.id)
    record_deleted(request, user)
    return HTTPNoContent()
