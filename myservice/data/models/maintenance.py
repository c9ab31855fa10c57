"""The maintenance switch: one row that says whether the service refuses writes.

``myservice-maintenance INI on|off`` changes it; every process of the service reads it again
every ``myservice.maintenance_check_seconds`` (see ``myservice.edge.maintenance``).
"""

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, bindparam, event, select
from sqlalchemy.orm import Mapped, mapped_column

from myservice.data.errors import OperatorError
from myservice.data.models.meta import Base, UTCDateTime, utcnow


class ServiceMode(Base):
    """One row (the migration creates it): ``read_only``, and since when it is what it is."""

    __tablename__ = "service_mode"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    read_only: Mapped[bool]
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


MODE = ServiceMode.__table__

#: The switch's state: (read_only, changed_at), or no row at all before ``alembic upgrade``.
READ = select(MODE.c.read_only, MODE.c.changed_at).where(MODE.c.id == 1)

#: Turn it on or off; a switch to what it already is keeps its ``changed_at``.
SWITCH = (
    MODE.update()
    .where(MODE.c.id == 1, MODE.c.read_only != bindparam("read_only"))
    .values(read_only=bindparam("read_only"), changed_at=bindparam("at"))
)


#: The same, holding the row against a switch until the transaction ends (FOR SHARE).
READ_HELD = READ.with_for_update(read=True)

#: ``session.info`` keys: whether the session may commit while the service is read-only (an
#: operator's word), and what the operator does to say so.
DURING_MAINTENANCE = "during_maintenance"
OVERRIDE = "maintenance_override"


class ServiceReadOnly(OperatorError):
    """A tool's commit, refused: the service is read-only for maintenance."""

    exit_status = 75  # EX_TEMPFAIL (sysexits.h): a temporary refusal, try again later


def read_mode(session, **execution_options):
    """(read_only, changed_at) of the row; the service is read-write when there is none."""
    row = session.execute(READ, execution_options=execution_options).first()
    return (row.read_only, row.changed_at) if row else (False, None)


def switch_mode(session, read_only):
    """Turn read-only on or off; True when that changed something."""
    return session.execute(SWITCH, {"read_only": read_only, "at": utcnow()}).rowcount == 1


def refuse_commits_while_read_only(session, override):
    """Make every commit of ``session`` (a tool's, outside a request) raise ``ServiceReadOnly``
    while the service is read-only for maintenance, unless ``session.info[DURING_MAINTENANCE]``
    is true; the transaction is then rolled back and nothing is written. ``override`` says, in
    the error, how the operator makes it true (a tool's ``--during-maintenance``).

    The switch is read just before COMMIT, in the transaction, and held: on PostgreSQL ``FOR
    SHARE``, on SQLite the write lock that a tool's transaction holds from its BEGIN IMMEDIATE.
    So ``myservice-maintenance INI on`` waits for a commit under way, and no tool commits after
    it has returned; the service's own processes follow within ``maintenance_check_seconds``.
    """
    session.info[OVERRIDE] = override
    event.listen(session, "before_commit", _refuse_while_read_only)


def _refuse_while_read_only(session):
    if session.info.get(DURING_MAINTENANCE):
        return
    row = session.execute(READ_HELD).first()
    if row is not None and row.read_only:
        raise ServiceReadOnly(
            f"the service is read-only for maintenance since"
            f" {row.changed_at.isoformat(timespec='seconds')}: nothing was written. Turn it off"
            f" (myservice-maintenance INI off), or, if this write is part of the maintenance,"
            f" {session.info[OVERRIDE]}"
        )
