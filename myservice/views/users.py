"""/users: create, list, read, update (JSON merge patch) and delete users."""

import re
from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError
from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config
from sqlalchemy import func, select

from ..apidoc import IF_MATCH, IF_NONE_MATCH, Reply, links, operation
from ..idempotency import IDEMPOTENCY_KEY, idempotent
from ..models import User
from ..models import membership as memberships
from ..pagination import PageParams, page
from ..validation import (
    JSON_OR_MERGE_PATCH,
    Body,
    MergePatch,
    Representation,
    Stated,
    Text,
    validate_query,
)
from .groups import record_left
from .resource import (
    apply_patch,
    create,
    find_for_write,
    read,
    read_patch,
    record_deleted,
    respond_unless_not_modified,
)

# -- schemas -------------------------------------------------------------------------------

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,31}")


def _username(value: str) -> str:
    if not USERNAME.fullmatch(value):
        raise PydanticCustomError(
            "username",
            "must be 3 to 32 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit",
        )
    return value.lower()


def _email(value: str) -> str:
    if len(value) > 254:
        raise PydanticCustomError("email", "must be at most 254 characters")
    try:
        validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as error:
        raise PydanticCustomError(
            "email", "is not a valid email address: {reason}", {"reason": str(error)}
        ) from None
    return value


Username = Annotated[str, AfterValidator(_username), Stated(pattern=f"^{USERNAME.pattern}$")]
Email = Annotated[str, AfterValidator(_email), Stated(format="email", maxLength=254)]
#: ``null`` means the default, ``""``: in a merge patch null removes a member, and a client
#: that sends null for an optional field on create means the same.
FullName = Annotated[
    Text,
    BeforeValidator(lambda value: "" if value is None else value),
    Field(max_length=200),
    Stated(nullable=True),
]


class UserCreate(Body):
    username: Username
    email: Email
    full_name: FullName = ""


class UserPatch(MergePatch):
    """A JSON merge patch: absent fields stay as they are."""

    username: Username = None  # null is invalid: a user always has one
    email: Email = None
    full_name: FullName = None


class UserOut(Representation):
    id: int
    username: str
    email: str
    full_name: str
    created_at: datetime
    updated_at: datetime
    version: int


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class UserFilters(PageParams):
    username: Text | None = None
    email: Text | None = None


# -- views ---------------------------------------------------------------------------------

#: Reads select rows of the table, not entities (see ``resource.read``).
USERS = User.__table__


#: The operations on one user, which a response naming it links to.
ON_A_USER = ("get_user", "update_user", "delete_user", "list_user_groups")


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
        query = query.where(func.lower(USERS.c.email) == func.lower(params.email))
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
