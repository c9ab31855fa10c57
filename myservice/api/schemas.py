"""The shapes of the API: what each resource's requests carry and its responses say.

The views validate bodies and queries with these and render them; the importer checks its rows
with ``UserCreate``, the same rules as ``POST /users``. OpenAPI's schemas are generated from them.
"""

import re
from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from myservice.api.pagination import PageParams
from myservice.edge.validation import (
    Body,
    MergePatch,
    Representation,
    Stated,
    Text,
    integer,
)

# -- users -------------------------------------------------------------------------------------

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


#: The operations on one user, which a response naming it links to.
ON_A_USER = ("get_user", "update_user", "delete_user", "list_user_groups")


# -- groups ------------------------------------------------------------------------------------

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


#: The operations on one group, which a response naming it links to.
ON_A_GROUP = ("get_group", "update_group", "delete_group", "list_members")


# -- memberships -------------------------------------------------------------------------------


class MembershipOut(Representation):
    group_id: int
    user_id: int
    joined_at: datetime


# -- many users at once ------------------------------------------------------------------------


class UsersBulk(Body):
    users: list[UserCreate]


class UsersCreated(BaseModel):
    items: list[UserOut]
