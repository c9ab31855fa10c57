"""Keyset pagination with signed, opaque cursors.

A page is ``WHERE id > :after ORDER BY id LIMIT :limit + 1``: one range scan of the primary key,
as cheap at row ten million as at row ten. The cursor carries ``after``, signed (HMAC-SHA256)
with the service secret, so a client cannot forge or edit one: it gets 400 instead.
"""

import os
from urllib.parse import urlencode

from pydantic import Field
from webob.cookies import SignedSerializer

from myservice.data.errors import BadSettings
from myservice.edge.problems import InvalidQuery
from myservice.edge.validation import Query, QueryInt, query_pairs


class PageParams(Query):
    """The query parameters every collection accepts."""

    limit: QueryInt = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None, min_length=1, description="the next_cursor of the previous page; any other is 400"
    )


def page(request, query, key, params):
    """One page of ``query`` (rows with an ``id``) ordered by ``key`` (the id column), and the
    next page's cursor.

    Sets the ``Link: <...>; rel="next"`` header when there is a next page.
    """
    after = _decode(request, params.cursor) if params.cursor is not None else 0
    rows = request.dbsession.execute(
        query.where(key > after).order_by(key).limit(params.limit + 1)
    ).all()
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    cursor = request.registry["cursor_serializer"].dumps({"after": rows[-1].id}).decode()
    query_string = [(k, v) for k, v in query_pairs(request) if k != "cursor"]
    url = f"{request.path_url}?{urlencode([*query_string, ('cursor', cursor)])}"
    request.response.headers["Link"] = f'<{url}>; rel="next"'
    return rows, cursor


def _decode(request, cursor):
    try:
        after = request.registry["cursor_serializer"].loads(cursor.encode("ascii"))["after"]
    except (ValueError, UnicodeError, TypeError, KeyError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise InvalidQuery(
            [{"parameter": "cursor", "detail": "is not a cursor this service issued"}]
        )
    return after


def includeme(config):
    settings = config.get_settings()
    secret = os.environ.get("MYSERVICE_SECRET") or settings.get("myservice.secret")
    if not secret:
        raise BadSettings(
            "no secret to sign cursors with: set MYSERVICE_SECRET (or myservice.secret)"
        )
    config.registry["cursor_serializer"] = cursor_serializer(secret)


def cursor_serializer(secret):
    """The signer of page cursors: ``dumps({"after": id})`` mints one, ``loads`` checks one.

    Public so that tools (the benchmark) mint the cursors the service accepts, with its secret.
    """
    return SignedSerializer(secret, salt="myservice.cursor", hashalg="sha256")
