"""FastAPI's "SQL (Relational) Databases" tutorial with SQLAlchemy, serving users.

As the tutorial builds it: ``engine`` and ``SessionLocal`` at import, a ``get_db`` dependency
that yields a session per request and closes it, ``def`` (not ``async def``) path operations
(FastAPI runs them in its thread pool), pydantic schemas read ``from_attributes`` as response
models, and ``create_user`` that looks the email up first and answers 400 when it is taken.
Served by ``uvicorn bench.peers.fastapi_app:app``; the database is ``DATABASE_URL``.
"""

import datetime
import os
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from bench.peers.models import User
from myservice.data.models.meta import caseless

engine = create_engine(os.environ["DATABASE_URL"])
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


class UserCreate(BaseModel):
    username: str
    email: str
    full_name: str = ""


class UserOut(UserCreate):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    version: int


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


SessionDep = Annotated[Session, Depends(get_db)]

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/users/{user_id}", response_model=UserOut)
def read_user(user_id: int, db: SessionDep):
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user


@app.get("/users", response_model=list[UserOut])
def read_users(db: SessionDep, skip: int = 0, limit: int = 100):
    return db.scalars(select(User).order_by(User.id).offset(skip).limit(limit)).all()


@app.post("/users", response_model=UserOut, status_code=201)
def create_user(user: UserCreate, db: SessionDep):
    # The tutorial's ``email`` column has an index of its own; this table's unique index is on
    # the email's caseless key, so the lookup says so, or it would scan the table.
    taken = select(User).where(User.email_key == caseless(user.email))
    if db.scalars(taken).first() is not None:
        raise HTTPException(status_code=400, detail="Email already registered")
    now = datetime.datetime.now(datetime.UTC)
    db_user = User(**user.model_dump(), created_at=now, updated_at=now, version=1)
    db_user.username = db_user.username.lower()
    db.add(db_user)
    db.commit()
    db.refresh(db_user)
    return db_user
