"""Sessions for code outside a request: the command-line tools, alembic, the tests' direct writes.

A request gets its session from ``myservice.data.db`` (``request.dbsession``, joined to
pyramid_tm). Everything else opens one here, the seeds' ``get_session()`` done once:
``session_scope`` gives one transaction on the app's own engine and BEGIN policy, and
``opened_engine`` an engine for a tool that runs many of them. A database the operator must fix
(unreachable, not migrated) becomes a ``DatabaseUnusable``: one line, not a traceback.
"""

from contextlib import contextmanager

from pyramid.paster import get_appsettings
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from myservice.data.db import is_conflict
from myservice.data.engine import make_engine
from myservice.data.errors import OperatorError


@contextmanager
def session_scope(source, *, timeouts=False):
    """A session for code outside a request, in one transaction: the seeds' ``get_session()``.

    ``source`` is an ini file's path, its settings, or an engine. From a path or settings the
    engine is built as the app builds it (``make_engine``: the driver in autocommit, the ``begin``
    listener, SQLite's pragmas, PostgreSQL's connect bounds) and disposed at the end; an engine
    that is handed in is left open, for a tool that runs many transactions.

    The transaction begins as a writing request's does (``BEGIN IMMEDIATE`` on SQLite) and, with
    ``timeouts``, under the request timeouts; without them a migration or an import may run long.
    It commits when the block ends, rolls back when it raises, and the session is closed either
    way: objects loaded in it are detached afterwards, so read what you need inside the block
    (``expire_on_commit`` stays on, as in a request, so a stale value is never read by mistake).
    A transient conflict (``is_conflict``) reaches the caller, which may run the block again,
    as pyramid_retry replays a request.
    """
    with opened_engine(source) as engine, Session(engine) as session, session.begin():
        session.connection(execution_options={"access": "write", "timeouts": timeouts})
        yield session


@contextmanager
def opened_engine(source):
    """The engine of ``source`` (an ini file's path, its settings, or an engine), built as the
    app builds it and disposed when the block ends; an engine handed in is yielded as it is.

    A database the block cannot use (``unusable_database``) ends it in ``DatabaseUnusable``,
    which names the database and says what to do.
    """
    if isinstance(source, Engine):
        yield source
        return
    settings = get_appsettings(source, name="main") if isinstance(source, str) else source
    engine = make_engine(settings)
    try:
        yield engine
    except DBAPIError as error:
        unusable = unusable_database(engine, error)
        if unusable is None:
            raise
        raise unusable from error
    finally:
        engine.dispose()


class DatabaseUnusable(OperatorError):
    """A tool's database cannot be reached or logged into, or is not migrated."""


def unusable_database(engine, error):
    """The ``DatabaseUnusable`` that the DBAPI ``error`` means for a tool on ``engine``, or None
    when it is not the operator's to fix (a bug, a conflict the caller may replay).

    Unreachable: the connection failed (refused, unknown host or database, bad password: no
    statement was sent) or was lost. Not migrated: a table is missing.
    """
    url = engine.url.render_as_string(hide_password=True)
    reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else repr(error)
    lost = error.connection_invalidated or (error.statement is None and not is_conflict(error))
    if isinstance(error, OperationalError) and lost:
        return DatabaseUnusable(
            f"cannot use the database {url}: {reason}; check that it is up and that"
            " DATABASE_URL (else the ini file's sqlalchemy.url) names the right one"
        )
    if getattr(error.orig, "sqlstate", None) == "42P01" or reason.startswith("no such table"):
        return DatabaseUnusable(
            f"the database {url} is not migrated ({reason}): run alembic -c INI upgrade head first"
        )
    return None
