"""pyramid-cookiecutter-starter's SQLAlchemy backend, serving users as JSON.

The template's ``models/__init__.py`` (``get_engine``, ``get_session_factory``,
``get_tm_session``, ``includeme``) and its ``views``, condensed into one module; the views
return dicts through Pyramid's ``json`` renderer with a ``datetime`` adapter, as Pyramid's
renderer documentation shows. ``cookiecutter.ini`` (written by ``bench/peers/serve.py``) serves
it with ``use = egg:waitress#main``, the template's server.
"""

import datetime

import zope.sqlalchemy
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPNotFound
from pyramid.renderers import JSON
from pyramid.view import view_config
from sqlalchemy import engine_from_config, select
from sqlalchemy.orm import sessionmaker

from bench.peers.models import User


def get_engine(settings, prefix="sqlalchemy."):
    return engine_from_config(settings, prefix)


def get_session_factory(engine):
    factory = sessionmaker()
    factory.configure(bind=engine)
    return factory


def get_tm_session(session_factory, transaction_manager, request=None):
    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def includeme(config):
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")
    config.include("pyramid_retry")
    dbengine = settings.get("dbengine") or get_engine(settings)
    session_factory = get_session_factory(dbengine)
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request):
        dbsession = request.environ.get("app.dbsession")
        if dbsession is None:
            dbsession = get_tm_session(session_factory, request.tm, request=request)
        return dbsession

    config.add_request_method(dbsession, reify=True)


@view_config(route_name="user", request_method="GET", renderer="json")
def get_user(request):
    user = request.dbsession.get(User, int(request.matchdict["id"]))
    if user is None:
        raise HTTPNotFound()
    return user.as_dict()


@view_config(route_name="users", request_method="GET", renderer="json")
def list_users(request):
    limit = min(int(request.params.get("limit", 50)), 200)
    query = select(User).order_by(User.id).limit(limit)
    return [user.as_dict() for user in request.dbsession.scalars(query)]


@view_config(route_name="users", request_method="POST", renderer="json")
def create_user(request):
    body = request.json_body
    now = datetime.datetime.now(datetime.UTC)
    user = User(
        username=body["username"].lower(),
        email=body["email"],
        full_name=body.get("full_name", ""),
        created_at=now,
        updated_at=now,
        version=1,
    )
    request.dbsession.add(user)
    request.dbsession.flush()
    request.response.status = 201
    return user.as_dict()


def main(global_config, **settings):
    """The ``paste.app_factory`` (``use = call:bench.peers.cookiecutter:main``)."""
    with Configurator(settings=settings) as config:
        renderer = JSON()
        renderer.add_adapter(datetime.datetime, lambda value, request: value.isoformat())
        config.add_renderer("json", renderer)
        config.include(includeme)
        config.add_route("users", "/users")
        config.add_route("user", r"/users/{id:\d+}")
        config.add_route("health", "/health")
        config.add_view(lambda request: {"status": "ok"}, route_name="health", renderer="json")
        config.scan(__name__)
    return config.make_wsgi_app()
