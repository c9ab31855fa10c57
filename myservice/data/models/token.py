"""API tokens: a name, scopes and the SHA-256 of a secret that is shown once and never stored.

A request's ``Authorization: Bearer <secret>`` is hashed and looked up by that hash (a unique
index), once per process and token as long as nothing changes (``myservice.edge.tokencache``). The
secret carries 256 random bits, so an unsalted fast hash is enough; a slow password hash would
cost every request and buy nothing.
"""

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, String, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from myservice.data.db import mark_changed
from myservice.data.engine import SQLITE_BUSY_TIMEOUT_MS
from myservice.data.models.meta import Base, BigId, UTCDateTime, utcnow

log = logging.getLogger(__name__)

#: What a scope lets a token do: ``read`` every GET, ``write`` every change, ``metrics`` scrape.
SCOPES = ("read", "write", "metrics")

#: Secrets look like ``ms_`` and 43 URL-safe characters; anything else is refused unread.
PREFIX = "ms_"

#: ``last_used_at`` is written at most this often per token, so most reads stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # hex
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = ({"sqlite_autoincrement": True},)  # a new token never gets an old id


TOKENS = ApiToken.__table__

#: What a request's check reads, by the secret's hash: only the columns it needs, since every
#: request pays for each one (psycopg describes it, SQLAlchemy processes it).
_BY_HASH = select(
    TOKENS.c.id,
    TOKENS.c.name,
    TOKENS.c.scopes,
    TOKENS.c.last_used_at,
    TOKENS.c.expires_at,
    TOKENS.c.revoked,
).where(TOKENS.c.secret_sha256 == bindparam("secret_sha256"))

#: Note the use; the row lock is never waited for (``SKIP LOCKED``): when a concurrent request
#: of the same token holds it, that request is noting the use already. The lock is PostgreSQL's
#: ``FOR NO KEY UPDATE`` (the one an UPDATE of a non-key column takes anyway), not ``FOR UPDATE``:
#: a foreign-key check on the token's id (another write of the token storing its
#: Idempotency-Key) takes ``FOR KEY SHARE``, which ``FOR UPDATE`` would make wait until this
#: transaction ends, or until ``lock_timeout`` and a 503.
_NOTE_USE = TOKENS.update().where(
    TOKENS.c.id.in_(
        select(TOKENS.c.id)
        .where(TOKENS.c.id == bindparam("token_id"))
        .where(
            or_(
                TOKENS.c.last_used_at.is_(None),
                TOKENS.c.last_used_at < bindparam("stale_before"),
            )
        )
        .with_for_update(skip_locked=True, key_share=True)
    )
)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def find_by_hash(session, secret_sha256: str):
    """The token whose secret has this SHA-256 (``id``, ``name``, ``scopes``, ``last_used_at``,
    ``expires_at``, ``revoked``), revoked and expired ones included, or None.

    A Core statement on the session's connection: a SELECT of one row needs no identity map and
    no ORM events, and skipping the ORM session's execute saves a fifth of the lookup.
    """
    return session.connection().execute(_BY_HASH, {"secret_sha256": secret_sha256}).first()


def state(token, now: datetime) -> str:
    """``"revoked"``, ``"expired"`` or ``"active"``: only an active token is accepted."""
    if token.revoked:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def seconds_until_stale(token, now: datetime) -> float:
    """Seconds until ``token``'s use is to be noted again (0: now): ``last_used_at`` plus the
    resolution."""
    if token.last_used_at is None:
        return 0.0
    return max((token.last_used_at + LAST_USED_RESOLUTION - now).total_seconds(), 0.0)


def note_use(session, token, now: datetime):
    """Write ``last_used_at`` in the request's transaction: it commits, or is undone, with it."""
    session.execute(
        _NOTE_USE.values(last_used_at=now),
        {"token_id": token.id, "stale_before": now - LAST_USED_RESOLUTION},
    )
    mark_changed(session)


def note_use_if_free(session, token, now: datetime):
    """``note_use`` for a reading request, which has no transaction (``db.begin``): the UPDATE
    commits by itself, or is skipped. A read never waits for it nor fails by it: a database
    that refuses writes (a hot standby) or whose write lock a writer holds (SQLite; on
    PostgreSQL, ``SKIP LOCKED``) leaves the old value, to be noted by a later request."""
    connection = session.connection()
    on_sqlite = connection.dialect.name == "sqlite"
    try:
        if on_sqlite:
            connection.exec_driver_sql("PRAGMA busy_timeout = 0")
        note_use(session, token, now)
    except DBAPIError as error:
        log.info("the use of token %r was not noted: %s", token.name, type(error.orig).__name__)
    finally:
        if on_sqlite:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def create_token(session, name: str, scopes, expires_at: datetime | None = None) -> str:
    """Store a new token and return its secret: the only time the secret exists anywhere."""
    secret = new_secret()
    session.execute(
        TOKENS.insert().values(
            name=name,
            secret_sha256=sha256(secret),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
            expires_at=expires_at,
            revoked=False,
        )
    )
    return secret


def revoke_token(session, name: str) -> bool:
    """Revoke the token ``name``; False when there is none of that name."""
    result = session.execute(update(TOKENS).where(TOKENS.c.name == name).values(revoked=True))
    return result.rowcount == 1


def all_tokens(session):
    return session.execute(select(TOKENS).order_by(TOKENS.c.name)).all()
