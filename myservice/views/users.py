"""/users: create, list, read, update (JSON merge patch) and delete users."""

import re
from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from pyramid.httpexceptions import (
    HTTPConflict,
    HTTPNoContent,
    HTTPNotFound,
    HTTPNotModified,
    HTTPPreconditionFailed,
)
from pyramid.view import view_config
from sqlalchemy import bindparam, func, inspect, select
from sqlalchemy.exc import IntegrityError

from ..changes import record_change
from ..idempotency import idempotent
from ..models import MAX_ID, User, insert_user, taken_fields
from ..pagination import PageParams, page
from ..validation import JSON_OR_MERGE_PATCH, Text, validate_body, validate_query

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


Username = Annotated[str, AfterValidator(_username)]
Email = Annotated[str, AfterValidator(_email)]
#: ``null`` means the default, ``""``: in a merge patch null removes a member, and a client
#: that sends null for an optional field on create means the same.
FullName = Annotated[
    Text, BeforeValidator(lambda value: "" if value is None else value), Field(max_length=200)
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: Username
    email: Email
    full_name: FullName = ""


class UserPatch(BaseModel):
    """A JSON merge patch: absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    username: Username = None  # null is invalid: a user always has one
    email: Email = None
    full_name: FullName = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


@view_config(route_name="users", request_method="POST", renderer="json", decorator=idempotent)
def create_user(request):
    data = validate_body(request, UserCreate)
    user = insert_user(request.dbsession, data.model_dump())
    if user is None:
        check_names_free(request.dbsession, data.username, data.email)
        raise HTTPConflict("username or email is taken")  # its holder was deleted since
    request.response.status_code = 201
    request.response.location = request.route_path("user", id=user.id)
    request.response.etag = str(user.version)
    created = UserOut.model_validate(user)
    record_change(request, "user.created", request.response.location, created)
    return created


@view_config(route_name="users", request_method="GET", renderer="json")
def list_users(request):
    params = validate_query(request, UserFilters)
    query = select(USERS)
    if params.username is not None:
        query = query.where(USERS.c.username == params.username.lower())
    if params.email is not None:
        query = query.where(func.lower(USERS.c.email) == func.lower(params.email))
    users, next_cursor = page(request, query, USERS.c.id, params)
    return UserPage(items=users, next_cursor=next_cursor)


@view_config(route_name="user", request_method="GET", renderer="json")
def get_user(request):
    user = read_user(request)
    if str(user.version) in request.if_none_match:
        return HTTPNotModified(etag=str(user.version))
    request.response.etag = str(user.version)
    return UserOut.model_validate(user)


@view_config(route_name="user", request_method="PATCH", renderer="json")
def update_user(request):
    user = find_user(request, for_update=True)
    check_if_match(request, user)
    changes = validate_body(request, UserPatch, JSON_OR_MERGE_PATCH).model_dump(exclude_unset=True)
    version = user.version
    for name, value in changes.items():
        setattr(user, name, value)
    save(request, user)
    request.response.etag = str(user.version)
    updated = UserOut.model_validate(user)
    if user.version != version:  # a patch that changes nothing is no change
        record_change(request, "user.updated", request.route_path("user", id=user.id), updated)
    return updated


@view_config(route_name="user", request_method="DELETE")
def delete_user(request):
    user = find_user(request, for_update=True)
    check_if_match(request, user)
    request.dbsession.delete(user)
    request.dbsession.flush()
    record_change(request, "user.deleted", request.route_path("user", id=user.id))
    return HTTPNoContent()


# -- helpers -------------------------------------------------------------------------------

#: Reads select rows, not entities: a GET needs no identity map and no unit of work, and
#: building ORM objects was a third of its cost. Writes load the entity (``find_user``).
USERS = User.__table__

#: Built once, so each GET skips building the statement and its cache key.
SELECT_USER = select(USERS).where(USERS.c.id == bindparam("id"))


def user_id(request):
    """The id in the URL, or 404 when no row can have it (0, or beyond 64 bits)."""
    user_id = int(request.matchdict["id"])
    if not 0 < user_id <= MAX_ID:
        raise HTTPNotFound(f"user {user_id} does not exist")
    return user_id


def read_user(request):
    """The user named in the URL as a row, or 404."""
    user = request.dbsession.execute(SELECT_USER, {"id": user_id(request)}).first()
    if user is None:
        raise HTTPNotFound(f"user {request.matchdict['id']} does not exist")
    return user


def find_user(request, *, for_update=False) -> User:
    """The user named in the URL, or 404. ``for_update`` locks its row until the transaction ends,
    so concurrent writers to one user take turns instead of failing and retrying."""
    user = request.dbsession.get(User, user_id(request), with_for_update=for_update)
    if user is None:
        raise HTTPNotFound(f"user {request.matchdict['id']} does not exist")
    return user


def check_if_match(request, user):
    """412 unless ``If-Match`` (when sent) names the current version.

    The write that follows is conditional on the same version (``version_id_col``), so a
    change that lands in between makes it match no row and the request is replayed.
    """
    if str(user.version) not in request.if_match:
        raise HTTPPreconditionFailed(f"user {user.id} is at version {user.version}")


def check_names_free(session, username, email, *, other_than=None):
    """409 naming each of ``username`` and ``email`` that another user holds."""
    taken = taken_fields(session, username, email, other_than=other_than)
    if taken:
        names = " and ".join(f"{field} '{value}'" for field, value in taken.items())
        raise HTTPConflict(f"{names} {'are' if len(taken) > 1 else 'is'} taken")


def save(request, user):
    """Flush a changed ``user`` now, so that a taken username or email is a 409 here, not a 500
    at commit. The holders are looked for only when the change claims a new name."""
    session = request.dbsession
    state = inspect(user)
    if any(state.attrs[name].history.has_changes() for name in ("username", "email")):
        check_names_free(session, user.username, user.email, other_than=user.id)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took it between our check and our write
        raise HTTPConflict("username or email is taken") from None
