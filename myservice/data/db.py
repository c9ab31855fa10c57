"""The database session: one engine per process, one session per request (or per script).

- The engine (``myservice.data.engine``) and the ``sessionmaker`` are built once, at startup;
  the factory is kept in
  ``config.registry["dbsession_factory"]`` (tests rebind it to a connection they control).
- ``request.dbsession`` is a reified request method: the first access in a request creates the
  session and joins it to the request's transaction manager (``request.tm``); a request that
  never touches it opens no session and checks out no connection.
- pyramid_tm owns the transaction: it commits when the view returns a 2xx/3xx and aborts on an
  exception or a 4xx/5xx response; either way zope.sqlalchemy closes the session, which returns
  its connection to the pool. pyramid_retry replays the request on transient conflicts.
- Code outside a request (the command-line tools, alembic) opens its session with
  ``myservice.data.scripts.session_scope``: the same engine, BEGIN policy and conflict rule,
  one transaction that commits on success and rolls back on an exception, closed and disposed
  at the end.
"""

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from zope.sqlalchemy.datamanager import ZopeTransactionEvents

from myservice.data.engine import make_engine
from myservice.data.replicas import READ_METHODS, replicas_from_settings

#: Methods that may write: they run in a transaction (on SQLite, one that holds the write lock).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The session events ``zope.sqlalchemy.register`` listens to (see ``RequestSession``).
ZOPE_EVENTS = (
    "after_begin",
    "after_attach",
    "after_flush",
    "after_bulk_update",
    "after_bulk_delete",
    "before_commit",
    "do_orm_execute",
)


class RequestSession(Session):
    """A session that joins the transaction manager it is given, as zope.sqlalchemy does.

    ``zope.sqlalchemy.register(session, transaction_manager=request.tm)`` attaches seven event
    listeners to every session it is given, and detaching them again made up about 15% of a
    simple request. Here the listeners are registered once, on this class, and each forwards to
    the ``ZopeTransactionEvents`` (zope.sqlalchemy's own listener object) that the session
    carries for its request's manager: the same behaviour, no per-request registration.
    """

    def __init__(self, *, transaction_manager, **options):
        super().__init__(**options)
        self.info["zope_events"] = ZopeTransactionEvents(transaction_manager=transaction_manager)


def _forward(name):
    def listener(target, *args):
        # ``target`` is the session, or an event context (bulk update, ORM execute) naming it.
        session = target if isinstance(target, Session) else target.session
        getattr(session.info["zope_events"], name)(target, *args)

    return listener


for _name in ZOPE_EVENTS:
    event.listen(RequestSession, _name, _forward(_name))


def mark_changed(session):
    """Tell the request's transaction that ``session`` wrote through Core or ``text()``.

    zope.sqlalchemy sees only ORM writes; without this the transaction is rolled back. A
    session outside a request (the importer's) commits by itself and has no manager to tell.
    """
    events = session.info.get("zope_events")
    if events is not None:
        events.mark_changed(session)


def dbsession(request):
    """This request's session, joined to ``request.tm`` (pyramid_tm commits or aborts it).

    It checks out its connection at once, telling ``begin`` whether this request reads or writes,
    and that the request timeouts apply (``myservice.data.timeouts``).
    """
    access = "write" if request.method in WRITE_METHODS else "read"
    replicas = request.registry.get("replicas")
    if replicas is not None and request.method in READ_METHODS:  # a replica, or the primary
        session = joined_session(request, access, True, replicas.read_engine(request.environ))
        replicas.see_position_at_end(request.tm.get(), session, request.environ)
        return session
    return joined_session(request, access, timeouts=True)


def primary_session(request):
    """The request's session on the primary, for what a read must not take from a replica
    (its token, and noting the token's use: ``edge.security``) or checks the primary itself
    (``/health/ready``): ``request.dbsession`` unless replicas serve reads."""
    if request.registry.get("replicas") is None or request.method in WRITE_METHODS:
        return request.dbsession
    return joined_session(request, "read", timeouts=True)


def joined_session(request, access=None, timeouts=False, bind=None):
    """A new session joined to ``request.tm``'s transaction (begun already), its connection
    checked out with ``access`` for ``begin`` (None: a plain BEGIN) and, with ``timeouts``, the
    request timeouts (pshell's session has none: an operator's query may take its time); on
    ``bind`` (a replica's engine) instead of the factory's own engine when given."""
    options = {"bind": bind} if bind is not None else {}
    session = request.registry["dbsession_factory"](transaction_manager=request.tm, **options)
    session.connection(execution_options={"access": access, "timeouts": timeouts})
    return session


def is_conflict(exc):
    """A conflict with a concurrent transaction that a replay can resolve.

    The same rule zope.sqlalchemy applies while the transaction is still open: SQLSTATE class 40
    (serialization failure, deadlock) and a versioned UPDATE/DELETE that matched no row.
    """
    if isinstance(exc, StaleDataError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and bool(sqlstate) and sqlstate.startswith("40")


def includeme(config):
    settings = config.get_settings()
    # The transaction policy is part of the design, not a deployment choice.
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    settings["tm.commit_veto"] = "pyramid_tm.default_commit_veto"  # a 4xx/5xx response aborts
    settings["tm.annotate_user"] = False  # it would call the security policy inside the tween
    settings["retry.attempts"] = int(settings.get("retry.attempts", 3))
    settings.setdefault("retry.activate_hook", "myservice.edge.jsonbody.retry_attempts")
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = make_engine(settings)
    config.registry["dbsession_factory"] = sessionmaker(bind=engine, class_=RequestSession)
    config.registry["replicas"] = replicas_from_settings(settings, engine, make_engine)
    config.add_request_method(dbsession, reify=True)
    config.add_request_method(primary_session, reify=True)
