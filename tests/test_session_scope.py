"""``session_scope``: the one way code outside a request (the tools, alembic) opens a session.

Each test opens it as a tool does, from the settings of ``development.ini`` pointed at the
session's database, and looks at the database through a connection of its own.
"""

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm.exc import DetachedInstanceError

from myservice.data.models import User
from myservice.data.scripts import opened_engine, session_scope
from tests.support.database import short_lived_engine
from tests.support.factories import unique


@pytest.fixture
def settings(app_settings, empty_tables):
    return app_settings


def stored_usernames(db_url, username):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        query = select(User.username).where(User.username == username)
        return connection.scalars(query).all()


def in_transaction(session):
    """Whether the session's DBAPI connection is inside a transaction on the server."""
    dbapi = session.connection().connection.dbapi_connection
    if hasattr(dbapi, "in_transaction"):  # sqlite3
        return dbapi.in_transaction
    return dbapi.info.transaction_status.name == "INTRANS"  # psycopg, before any statement


def user_row(name):
    return User(username=name, email=f"{name}@example.org")


def test_the_block_commits_what_it_wrote_when_it_ends(settings, db_url):
    name = unique("scope")

    with session_scope(settings) as session:
        session.add(user_row(name))

    assert stored_usernames(db_url, name) == [name]


def test_an_exception_in_the_block_rolls_back_everything_and_reaches_the_caller(settings, db_url):
    name = unique("scope")

    with pytest.raises(RuntimeError, match="the tool failed"), session_scope(settings) as session:
        session.add(user_row(name))
        session.flush()  # sent to the database, inside the transaction
        raise RuntimeError("the tool failed")

    assert stored_usernames(db_url, name) == []


def test_the_block_is_one_transaction_begun_as_a_writing_requests_is(settings):
    # On SQLite that is BEGIN IMMEDIATE before any statement (the write lock is held from the
    # start); on PostgreSQL a BEGIN, although the driver runs in autocommit, sent with the first
    # statement (myservice.data.roundtrips): each statement alone would get its own transaction.
    with session_scope(settings) as session:
        if session.get_bind().dialect.name == "sqlite":
            assert in_transaction(session)
        else:
            first = session.execute(text("SELECT txid_current()")).scalar()
            assert in_transaction(session)
            assert session.execute(text("SELECT txid_current()")).scalar() == first


def test_the_session_is_closed_and_its_connection_back_in_the_pool_when_the_block_ends(
    settings, db_url
):
    with opened_engine(settings) as engine:
        with session_scope(engine) as session:
            assert engine.pool.checkedout() == 1
        assert engine.pool.checkedout() == 0
        assert engine.pool.checkedin() == 1  # an engine handed in stays open for the next
        assert not session.in_transaction()
        assert list(session) == []  # nothing left in the closed session


def test_an_engine_built_from_settings_is_disposed_when_the_block_ends(settings):
    with session_scope(settings) as session:
        engine = session.get_bind()
        assert engine.pool.checkedout() == 1
    assert engine.pool.checkedout() == 0
    assert engine.pool.checkedin() == 0  # disposed: no connection kept open


def test_objects_are_detached_after_the_block_so_read_what_you_need_inside_it(settings):
    """The pitfall the seeds warn about: an object outlives its session. Its attributes were
    expired by the commit, and a detached object cannot load them again."""
    name = unique("scope")

    with session_scope(settings) as session:
        user = user_row(name)
        session.add(user)
        session.flush()
        username_inside = user.username

    assert username_inside == name
    with pytest.raises(DetachedInstanceError):
        user.username  # noqa: B018 (the attribute access is what raises)
