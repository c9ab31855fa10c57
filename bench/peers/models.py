"""The ``users`` table as both peers' guides declare a model: one declarative class."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from myservice.data.models.meta import caseless_of
from myservice.data.models.user import EMAIL_KEY_LENGTH


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: Not in the guides: the shared table's unique key of the email (NOT NULL), filled as
    #: myservice fills it, or every insert of a peer fails. Left out of the peers' answers.
    email_key: Mapped[str] = mapped_column(String(EMAIL_KEY_LENGTH), default=caseless_of("email"))

    def as_dict(self):
        columns = (column for column in self.__table__.columns if column.key != "email_key")
        return {column.key: getattr(self, column.key) for column in columns}
