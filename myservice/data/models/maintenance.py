"""The maintenance switch: one row that says whether the service refuses writes.

``myservice-maintenance INI on|off`` changes it; every process of the service reads it again
every ``myservice.maintenance_check_seconds`` (see ``myservice.edge.maintenance``).
"""

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

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


def read_mode(session, **execution_options):
    """(read_only, changed_at) of the row; the service is read-write when there is none."""
    row = session.execute(READ, execution_options=execution_options).first()
    return (row.read_only, row.changed_at) if row else (False, None)


def switch_mode(session, read_only):
    """Turn read-only on or off; True when that changed something."""
    return session.execute(SWITCH, {"read_only": read_only, "at": utcnow()}).rowcount == 1
