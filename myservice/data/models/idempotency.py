"""Idempotency keys: a POST's key, a fingerprint of its request and the response it got.

Keys belong to the token that sent them: two clients that pick the same key never meet.

A row is written when a request claims its key, at the start of its transaction, and gets its
response before that transaction commits: a committed row always has one. Rows whose
``expires_at`` has passed are free to be claimed again, and are purged (oldest first, through
the index on ``expires_at``).
"""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, bindparam, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from myservice.data.db import mark_changed
from myservice.data.models.meta import Base, BigId, UTCDateTime


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    token_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[int | None]  # the response: None only while its request is in flight
    headers: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)


KEYS = IdempotencyKey.__table__
_RESPONSE = {"status": None, "headers": None, "body": None}


def _claim(insert):
    statement = insert(KEYS).values(
        token_id=bindparam("token_id"),
        key=bindparam("key"),
        fingerprint=bindparam("fingerprint"),
        expires_at=bindparam("expires"),
    )
    return statement.on_conflict_do_update(
        index_elements=[KEYS.c.token_id, KEYS.c.key],
        set_={
            "fingerprint": statement.excluded.fingerprint,
            "expires_at": statement.excluded.expires_at,
            **_RESPONSE,
        },
        where=KEYS.c.expires_at <= bindparam("now"),
    ).returning(KEYS.c.key)


#: Insert the key, or take over an expired one; no row back when a live one holds it. On
#: PostgreSQL it waits for an uncommitted holder's transaction to end first.
_CLAIM = {"postgresql": _claim(postgresql.insert), "sqlite": _claim(sqlite.insert)}

#: (Not named after the columns: an UPDATE keeps those names for its SET clause.)
_THIS_KEY = (KEYS.c.token_id == bindparam("owner")) & (KEYS.c.key == bindparam("claimed"))

_FIND = select(KEYS).where(_THIS_KEY)

_STORE = (
    KEYS.update()
    .where(_THIS_KEY)
    .values(status=bindparam("status"), headers=bindparam("headers"), body=bindparam("body"))
)


def claim_key(
    session: Session, token_id: int, key: str, fingerprint: str, now: datetime, expires: datetime
):
    """Claim the token's ``key`` for this transaction and return None, or return the live row
    holding it."""
    params = {
        "token_id": token_id,
        "key": key,
        "fingerprint": fingerprint,
        "now": now,
        "expires": expires,
    }
    if session.execute(_CLAIM[session.get_bind().dialect.name], params).first() is not None:
        mark_changed(session)
        return None
    return session.execute(_FIND, {"owner": token_id, "claimed": key}).one()


def store_response(
    session: Session, token_id: int, key: str, status: int, headers: dict, body: bytes
):
    params = {"owner": token_id, "claimed": key, "status": status, "headers": headers}
    session.execute(_STORE, {**params, "body": body})


def purge_expired(session, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` expired keys, oldest first; skip any that a request has locked."""
    expired = (
        select(KEYS.c.token_id, KEYS.c.key)
        .where(KEYS.c.expires_at <= now)
        .order_by(KEYS.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = delete(KEYS).where(tuple_(KEYS.c.token_id, KEYS.c.key).in_(expired))
    return session.execute(statement).rowcount
