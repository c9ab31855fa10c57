"""Keyset pagination with signed, opaque cursors bound to their listing.

A page is ``WHERE id > :after ORDER BY id LIMIT :limit + 1``: one range scan of the primary key,
as cheap at row ten million as at row ten. The cursor carries ``after`` and the listing it was
issued for (``listing``: the route, the ids in its URL and the filters), signed (HMAC-SHA256)
with the service secret, so a client cannot forge or edit one (400), nor take one from
``/users`` to ``/groups``, from one group's members to another's, or from one filter to another
(400 too): a page always continues the listing it came from.

The secret: ``MYSERVICE_SECRET`` (or ``myservice.secret``) signs. The previous ones,
``MYSERVICE_PREVIOUS_SECRETS`` (or ``myservice.previous_secrets``, space-separated), still
verify, so cursors in flight survive a rotation. Each must be strong (``weakness``), or the
service does not start.
"""

import hashlib
import json
import os
from urllib.parse import urlencode

from pydantic import Field
from webob.cookies import SignedSerializer

from myservice.data.errors import BadSettings
from myservice.data.models import records
from myservice.edge.problems import InvalidQuery
from myservice.edge.validation import Query, QueryInt, query_pairs

#: Query parameters that page through a listing, rather than choose it.
PAGING = frozenset({"limit", "cursor"})

#: A secret shorter than this, or with fewer different characters, is refused at startup.
MIN_SECRET_LENGTH = 32
MIN_SECRET_CHARACTERS = 10
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


class PageParams(Query):
    """The query parameters every collection accepts."""

    limit: QueryInt = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None,
        min_length=1,
        description="the next_cursor of the previous page of this listing, with the same "
        "filters; any other is 400",
    )


def page(request, query, key, params):
    """One page of ``query`` (rows with an ``id``, as dicts: ``records``) ordered by ``key``
    (the id column), and the next page's cursor.

    Sets the ``Link: <...>; rel="next"`` header when there is a next page.
    """
    cursors = request.registry["cursors"]
    bound_to = listing_of(request, params)
    after = cursors.after(params.cursor, bound_to) if params.cursor is not None else 0
    rows = records(
        request.dbsession.execute(query.where(key > after).order_by(key).limit(params.limit + 1))
    )
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    cursor = cursors.mint(rows[-1]["id"], bound_to)
    query_string = [(k, v) for k, v in query_pairs(request) if k != "cursor"]
    url = f"{request.path_url}?{urlencode([*query_string, ('cursor', cursor)])}"
    request.response.headers["Link"] = f'<{url}>; rel="next"'
    return rows, cursor


def listing_of(request, params):
    """The listing this request pages through: its route, the ids in its URL, its filters."""
    filters = params.model_dump(exclude=PAGING, exclude_none=True)
    return listing(request.matched_route.name, request.matchdict, filters)


def listing(route_name, ids=None, filters=None):
    """What a cursor is bound to, as a digest: ``route_name``, the URL's ``ids`` (as numbers:
    /groups/007 is /groups/7) and the ``filters`` given. Public so that tools (the benchmark)
    mint the cursors the service accepts: ``listing("users")`` is ``GET /users`` unfiltered."""
    named = [
        route_name,
        sorted((name, int(value)) for name, value in (ids or {}).items()),
        sorted((filters or {}).items()),
    ]
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()[:32]


class Cursors:
    """Mints page cursors with the first secret; reads those of any of them."""

    def __init__(self, secrets):
        self.signers = [
            SignedSerializer(secret, salt="myservice.cursor", hashalg="sha256")
            for secret in secrets
        ]

    def mint(self, after, bound_to):
        """The cursor of the page after id ``after`` of the listing ``bound_to``."""
        return self.signers[0].dumps({"after": after, "listing": bound_to}).decode()

    def after(self, cursor, bound_to):
        """The id after which ``cursor`` continues the listing ``bound_to``; 400 when no secret
        signed it, or it belongs to another listing."""
        data = self.verified(cursor)
        after = data.get("after") if isinstance(data, dict) else None
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise bad_cursor("is not a cursor this service issued")
        if data.get("listing") != bound_to:
            raise bad_cursor("belongs to another listing or filter")
        return after

    def verified(self, cursor):
        for signer in self.signers:
            try:
                return signer.loads(cursor.encode("ascii"))
            except (ValueError, UnicodeError, TypeError):
                continue
        return None


def bad_cursor(detail):
    return InvalidQuery([{"parameter": "cursor", "detail": detail}])


def includeme(config):
    config.registry["cursors"] = Cursors(secrets(config.get_settings()))


def secrets(settings):
    """The signing secret, then the previous ones; ``BadSettings`` when there is none,
    or one is weak (one line, naming where it came from, never the secret itself)."""
    current = setting(settings, "MYSERVICE_SECRET", "myservice.secret")
    if current is None:
        raise BadSettings(
            "no secret to sign cursors with: set MYSERVICE_SECRET (or myservice.secret)"
        )
    named = [(current[0].strip(), current[1])]
    previous = setting(settings, "MYSERVICE_PREVIOUS_SECRETS", "myservice.previous_secrets")
    if previous is not None:
        named += [(old, f"a secret of {previous[1]}") for old in previous[0].split()]
    for secret, source in named:
        problem = weakness(secret)
        if problem is not None:
            raise BadSettings(f"{source} is too weak: {problem}; make one with {MAKE_ONE}")
    return [secret for secret, _ in named]


def setting(settings, variable, name):
    """(value, source) of the environment's ``variable``, else of the ini's ``name``; None when
    neither is set."""
    if os.environ.get(variable):
        return os.environ[variable], variable
    if settings.get(name):
        return settings[name], name
    return None


def weakness(secret):
    """Why ``secret`` is too weak to sign cursors with, or None. A rule against accidents (an
    empty-ish, short or repeated value), not a measure of randomness: make secrets with
    ``secrets.token_urlsafe``."""
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it has {len(secret)} characters, fewer than {MIN_SECRET_LENGTH}"
    if len(set(secret)) < MIN_SECRET_CHARACTERS:
        return f"it has {len(set(secret))} different characters, fewer than {MIN_SECRET_CHARACTERS}"
    return None
