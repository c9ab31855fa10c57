"""What every resource's views share: find by URL id (404), ETags (304, 412) and saving (409).

A resource here is a mapped class with an ``id``, a ``version`` (``version_id_col``), the names
of its ``unique_fields`` and a ``taken(session)`` method that says which of them another row
holds.
"""

from pyramid.httpexceptions import (
    HTTPConflict,
    HTTPNotFound,
    HTTPNotModified,
    HTTPPreconditionFailed,
)
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from myservice.api.changes import record_change
from myservice.api.schemas import GroupOut
from myservice.data.models import MAX_ID, insert_new, select_by_id
from myservice.edge.jsonbody import JSON_OR_MERGE_PATCH, validate_body


def url_id(request, model, key="id"):
    """The id in the URL, or 404 when no row can have it (0, or beyond 64 bits)."""
    row_id = int(request.matchdict[key])
    if not 0 < row_id <= MAX_ID:
        raise HTTPNotFound(f"{_name(model)} {row_id} does not exist")
    return row_id


def read(request, model, *, key="id"):
    """The ``model`` row whose id is the URL's ``key``, as a row (not an entity), or 404.

    Reads need no identity map and no unit of work: building entities was a third of a GET's
    cost. The statement is built once per model (``select_by_id``).
    """
    row_id = url_id(request, model, key)
    row = request.dbsession.execute(select_by_id(model.__table__), {"id": row_id}).first()
    if row is None:
        raise HTTPNotFound(f"{_name(model)} {row_id} does not exist")
    return row


def find(request, model, *, key="id", for_update=False):
    """The ``model`` row whose id is the URL's ``key``, or 404.

    ``for_update`` (True, or ``with_for_update`` flags) locks the row until the transaction
    ends, so concurrent writers to one row take turns instead of failing and retrying.
    """
    row_id = url_id(request, model, key)
    row = request.dbsession.get(model, row_id, with_for_update=for_update or None)
    if row is None:
        raise HTTPNotFound(f"{_name(model)} {row_id} does not exist")
    return row


def find_for_write(request, model):
    """The URL's ``model`` row, locked, once ``If-Match`` (when sent) names its version."""
    resource = find(request, model, for_update=True)
    check_if_match(request, resource)
    return resource


def check_if_match(request, resource):
    """412 unless ``If-Match`` (when sent) names the current version.

    The write that follows is conditional on the same version (``version_id_col``), so a
    change that lands in between makes it match no row and the request is replayed.
    """
    if str(resource.version) not in request.if_match:
        raise HTTPPreconditionFailed(
            f"{_name(type(resource))} {resource.id} is at version {resource.version}"
        )


def respond(request, resource, schema):
    """``resource`` rendered by ``schema``, with its version as the ETag."""
    request.response.etag = str(resource.version)
    return schema.model_validate(resource)


def respond_unless_not_modified(request, resource, schema):
    """304 when ``If-None-Match`` names the current version, else ``respond``."""
    if str(resource.version) in request.if_none_match:
        return HTTPNotModified(etag=str(resource.version))
    return respond(request, resource, schema)


def create(request, model, schema, out, route):
    """POST to a collection: 201 with the new ``model`` row, its Location and ETag.

    One statement (``insert_new``); only when it reports a taken unique value are the holders
    looked up, to name them in the 409.
    """
    values = validate_body(request, schema).model_dump()
    resource = insert_new(request.dbsession, model, values)
    if resource is None:
        check_unique_values_free(request.dbsession, model(**values))
        raise HTTPConflict(f"{' or '.join(model.unique_fields)} is taken")  # freed since
    request.response.status_code = 201
    request.response.location = location = request.route_path(route, id=resource.id)
    created = respond(request, resource, out)
    record_change(request, f"{_name(model)}.created", location, created)
    return created


def read_patch(request, model, schema):
    """The URL's row (locked, If-Match checked) and the JSON merge patch to apply to it."""
    resource = find_for_write(request, model)
    patch = validate_body(request, schema, JSON_OR_MERGE_PATCH)
    return resource, patch.model_dump(exclude_unset=True)


def apply_patch(request, resource, changes, out):
    """Set ``changes`` on ``resource``, save it, and answer it with its new ETag.

    A patch that changes nothing keeps the version and appends no change to the feed.
    """
    version = resource.version
    for name, value in changes.items():
        setattr(resource, name, value)
    save(request, resource)
    updated = respond(request, resource, out)
    if resource.version != version:
        record_updated(request, resource, updated)
    return updated


def record_updated(request, resource, representation):
    """A ``<resource>.updated`` change in the feed (the route is named after the model)."""
    name = _name(type(resource))
    record_change(
        request, f"{name}.updated", request.route_path(name, id=resource.id), representation
    )


def record_deleted(request, resource):
    """A ``<resource>.deleted`` change in the feed."""
    name = _name(type(resource))
    record_change(request, f"{name}.deleted", request.route_path(name, id=resource.id))


def save(request, resource):
    """Flush a changed ``resource`` now, so that a taken unique value is a 409 here, not a 500
    at commit. The holders are looked for only when the change claims a new unique value.
    """
    session = request.dbsession
    state = inspect(resource)
    fields = type(resource).unique_fields
    if any(state.attrs[name].history.has_changes() for name in fields):
        check_unique_values_free(session, resource)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took it between our check and our write
        raise HTTPConflict(f"{' or '.join(fields)} is taken") from None


def check_unique_values_free(session, resource):
    """409 naming each unique value of ``resource`` that another row holds."""
    taken = resource.taken(session)
    if taken:
        names = " and ".join(f"{field} '{value}'" for field, value in taken.items())
        raise HTTPConflict(f"{names} {'are' if len(taken) > 1 else 'is'} taken")


def _name(model):
    return model.__name__.lower()


# -- memberships: a change of a membership is a change of its group's count too


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
