"""The service in process, as ``main()`` builds it: a client whose requests carry a token, the
service plus views that only tests need, a test's requests rolled back, the lines it logs, and
the operations it serves."""

import logging
import re
from contextlib import contextmanager

import webtest
from pyramid.config import Configurator
from pyramid.static import static_view
from sqlalchemy.orm import sessionmaker

import myservice
from myservice.api.routes import ID
from myservice.edge.logwriting import flush_deferred
from tests.support.client import bearer


def with_token(app, secret):
    """A WebTest client of ``app`` whose requests carry the token ``secret``."""
    return webtest.TestApp(
        app, extra_environ={"HTTP_AUTHORIZATION": bearer(secret)["Authorization"]}
    )


def app_with_views(settings, views):
    """The service as ``main()`` builds it, plus ``views``: {path: view} that only tests need."""
    with Configurator(settings=dict(settings)) as config:
        config.include(myservice.includeme)
        for path, view in views.items():
            config.add_route(path, path)
            config.add_view(view, route_name=path, renderer="json")
    return config.make_wsgi_app()


@contextmanager
def rolled_back(app):
    """Until the block ends, the app's requests run over one connection whose outer
    transaction is then rolled back.

    The registry's session factory is rebound to that connection with
    ``join_transaction_mode="create_savepoint"``, so every request still runs the real
    pyramid_tm commit/abort path (on a SAVEPOINT) and sees what earlier requests of the same
    test committed.
    """
    registry = app.registry
    factory = registry["dbsession_factory"]
    connection = factory.kw["bind"].connect()
    outer = connection.begin()
    registry["dbsession_factory"] = sessionmaker(
        bind=connection, class_=factory.class_, join_transaction_mode="create_savepoint"
    )
    try:
        yield
    finally:
        registry["dbsession_factory"] = factory
        outer.rollback()
        connection.close()


@contextmanager
def collected_log(formatter):
    """A function that returns the lines myservice logged in the block so far, formatted by
    ``formatter`` as they are written (so with the id of the request being served), the
    access lines still queued included (``edge.logwriting.flush_deferred``)."""
    lines = []

    def logged():
        flush_deferred()
        return list(lines)

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(formatter)
    logger = logging.getLogger("myservice")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logged
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def served_views(app):
    """(path, method, view callable) for every route and view method the app really has,
    but static assets."""
    introspector = app.registry.introspector
    for route in introspector.get_category("routes"):
        pattern = route["introspectable"]["pattern"]
        path = re.sub(r"\{(\w+):" + re.escape(ID) + r"\}", r"{\1}", pattern)
        for related in route["related"]:
            if related.category_name == "views" and related["request_methods"]:
                if isinstance(related["callable"], static_view):
                    continue
                methods = related["request_methods"]
                for method in (methods,) if isinstance(methods, str) else methods:
                    yield path, method.lower(), related["callable"]


def served_operations(app):
    """(path, method) of every operation the app serves."""
    return {(path, method) for path, method, _ in served_views(app)}
