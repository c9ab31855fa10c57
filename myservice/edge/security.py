"""Who may do what: ``Authorization: Bearer <token>`` and the token's scopes.

- Views declare a permission, ``read`` (GETs) or ``write`` (changes), and a token is granted the
  permissions named by its scopes. The default permission is ``write``, so a view added without
  one is never public by accident; public views say ``permission=NO_PERMISSION_REQUIRED``.
- The token is read only when a view asks: from what this process remembers of the same
  ``Authorization`` header (``myservice.edge.tokencache``: a revocation reaches every process
  within a second), or else parsed and looked up by the SHA-256 of its secret in the request's
  own session, so the lookup shares the request's one connection (and, for a write, its
  transaction). Always on the primary (``request.primary_session``): a replica may not have
  replayed a revocation yet.
- Its use is noted (``last_used_at``) at most once a minute per token and process.
- No token, or one that is unknown, revoked or expired: 401 with ``WWW-Authenticate: Bearer``
  (RFC 6750; ``error="invalid_token"`` when a token was sent). A token without the scope: 403.
"""

import re
import time
from dataclasses import dataclass

from pyramid.security import Allowed, Denied

from myservice.data.db import WRITE_METHODS
from myservice.data.models.meta import utcnow
from myservice.data.models.token import (
    LAST_USED_RESOLUTION,
    PREFIX,
    find_by_hash,
    note_use,
    note_use_if_free,
    seconds_until_stale,
    sha256,
)
from myservice.edge.accesslog import TOKEN_KEY
from myservice.edge.problems import http_exception_view, problem
from myservice.edge.tokencache import token_cache

#: ``Authorization: Bearer <secret>``, the secret as ``models.token.new_secret`` makes them.
BEARER = re.compile(rf"Bearer +({re.escape(PREFIX)}[A-Za-z0-9_-]{{43}}) *", re.IGNORECASE)

REALM = 'Bearer realm="myservice"'


@dataclass(frozen=True)
class Token:
    """A request's identity: the token it presented."""

    id: int
    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class Refusal:
    """Why a request has no identity: ``error`` is RFC 6750's code, None when no token came."""

    error: str | None
    detail: str


NO_TOKEN = Refusal(None, "this request needs a token: send 'Authorization: Bearer <token>'")
INVALID = Refusal("invalid_token", "the token is not valid")


def authentication(request):
    """The request's ``Token``, or the ``Refusal`` that says why it has none (reified: once)."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    if not header.strip():
        return NO_TOKEN
    entry = request.registry["token_cache"].read(header, lambda: look_up(request, header))
    row = entry.row
    now = utcnow()
    if row is None:
        return INVALID
    if row.revoked:
        return Refusal("invalid_token", "the token has been revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return Refusal("invalid_token", "the token has expired")
    note_use_when_due(request, entry, now)
    request.environ[TOKEN_KEY] = row.name
    return Token(row.id, row.name, frozenset(row.scopes))


def look_up(request, header):
    """The row of the token that ``header`` presents (by its secret's SHA-256), or None: no
    such token, or not a well-formed ``Bearer`` header."""
    match = BEARER.fullmatch(header)
    if match is None:
        return None
    return find_by_hash(request.primary_session, sha256(match.group(1)))


def note_use_when_due(request, entry, now):
    """Write the token's ``last_used_at`` when a minute has passed since this process (or, for
    a row just read, anyone) last noted it: a write in its transaction, a read on its own."""
    clock = time.monotonic()
    if entry.noted_until is None:  # just read: when the database says it was last noted
        entry.noted_until = clock + seconds_until_stale(entry.row, now)
    if clock < entry.noted_until:
        return
    entry.noted_until = clock + LAST_USED_RESOLUTION.total_seconds()
    note = note_use if request.method in WRITE_METHODS else note_use_if_free
    note(request.primary_session, entry.row, now)


class TokenSecurityPolicy:
    """The Pyramid security policy (``config.set_security_policy``) of bearer tokens."""

    def identity(self, request):
        outcome = request.authentication
        return outcome if isinstance(outcome, Token) else None

    def authenticated_userid(self, request):
        token = self.identity(request)
        return None if token is None else token.name

    def permits(self, request, context, permission):
        token = self.identity(request)
        if token is not None and permission in token.scopes:
            return Allowed("the token has the scope %r", permission)
        return Denied("the token lacks the scope %r", permission)

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []


def forbidden_view(exc, request):
    """401 for a request without a valid token, 403 for a token without the scope; a 403 that
    a view raised itself (``/metrics`` from afar) is answered as it is."""
    if exc.result is None:
        return http_exception_view(exc, request)
    outcome = request.authentication
    if isinstance(outcome, Refusal):
        challenge = REALM if outcome.error is None else f'{REALM}, error="{outcome.error}"'
        return problem(401, outcome.detail, {"WWW-Authenticate": challenge})
    (scope,) = exc.result.args  # the permission ``permits`` denied
    challenge = f'{REALM}, error="insufficient_scope", scope="{scope}"'
    detail = f"the token {outcome.name!r} lacks the scope {scope!r}"
    return problem(403, detail, {"WWW-Authenticate": challenge})


def includeme(config):
    engine = config.registry["dbsession_factory"].kw["bind"]
    config.registry["token_cache"] = token_cache(engine, config.get_settings())
    config.add_request_method(authentication, reify=True)
    config.set_security_policy(TokenSecurityPolicy())
    config.set_default_permission("write")
    config.add_forbidden_view(forbidden_view)
