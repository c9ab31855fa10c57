"""POST /users/bulk: many users in one transaction, all or nothing."""

from pyramid.httpexceptions import HTTPConflict
from pyramid.view import view_config
from sqlalchemy.exc import IntegrityError

from myservice.api.apidoc import Reply, links, operation
from myservice.api.changes import record_change
from myservice.api.idempotency import IDEMPOTENCY_KEY, idempotent
from myservice.api.schemas import ON_A_USER, UserOut, UsersBulk, UsersCreated
from myservice.data.models import clashes, insert_users
from myservice.edge.jsonbody import json_body
from myservice.edge.problems import ConflictInBody, InvalidBody
from myservice.edge.validation import validate


@view_config(
    route_name="users_bulk",
    request_method="POST",
    renderer="json",
    decorator=idempotent,
    permission="write",
)
@operation(
    "Create many users, all or none",
    description="409 or 422 names the first bad user (/users/3/email); nothing is created then",
    body=UsersBulk,
    body_limits={"users": "myservice.max_bulk"},
    headers=[IDEMPOTENCY_KEY],
    responses={
        201: Reply(
            "created, in request order",
            UsersCreated,
            links=links(*ON_A_USER, id="$response.body#/items/0/id"),
        )
    },
    problems=(409,),
)
def create_users(request):
    """201 with every user, in request order; or 409/422 naming the first bad one, and none
    is created."""
    users = parse(request)
    session = request.dbsession
    check_clashes(request, users)
    try:
        with session.begin_nested():  # an IntegrityError leaves the transaction usable
            created = insert_users(session, users)
    except IntegrityError:  # a concurrent request took a username or email after our check
        check_clashes(request, users)  # names the user it took (it has committed by now)
        raise HTTPConflict("a username or email of this batch was taken meanwhile") from None
    request.response.status_code = 201
    items = [UserOut.model_validate(user) for user in created]
    for user in items:
        record_change(request, "user.created", request.route_path("user", id=user.id), user)
    return UsersCreated(items=items)


def parse(request):
    """The users of the body as dicts: counted before anything else is done, then validated;
    422 points at the first bad user only (``/users/3/email``)."""
    data = json_body(request)
    limit = request.registry.settings["myservice.max_bulk"]
    if (
        isinstance(data, dict)
        and isinstance(data.get("users"), list)
        and len(data["users"]) > limit
    ):
        raise InvalidBody([{"pointer": "/users", "detail": f"must hold at most {limit} users"}])
    try:
        users = [user.model_dump() for user in validate(data, UsersBulk).users]
    except InvalidBody as error:
        raise InvalidBody(first_item_errors(error.errors)) from None
    return users


def check_clashes(request, users):
    """409 naming the first user whose username or email is taken, by a stored user or by an
    earlier user of the batch."""
    found = clashes(request.dbsession, users)
    if found:
        index = min(found)
        field = found[index]
        raise ConflictInBody(
            [{"pointer": f"/users/{index}/{field}", "detail": f"{field} is taken"}],
            f"user {index}: {field} '{users[index][field]}' is taken",
        )


def first_item_errors(errors):
    """The errors of the first bad user (all of them when they are not about one user)."""
    indexes = [int(e["pointer"].split("/")[2]) for e in errors if _item_pointer(e["pointer"])]
    if len(indexes) < len(errors) or not indexes:
        return errors
    first = f"/users/{min(indexes)}"
    return [e for e in errors if e["pointer"] == first or e["pointer"].startswith(first + "/")]


def _item_pointer(pointer):
    parts = pointer.split("/")
    return len(parts) > 2 and parts[1] == "users" and parts[2].isdigit()
