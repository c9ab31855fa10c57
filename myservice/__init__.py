"""myservice: users, groups and memberships as a Pyramid JSON service.

The package has four floors, and every import runs down them:

- ``myservice.cli``: the command-line tools (import, purge, tokens, maintenance, pshell).
- ``myservice.api``: the routes, the views grouped by resource with their schemas, and what the
  API says of itself (OpenAPI, the docs page, the change feed, idempotency, metrics).
- ``myservice.edge``: what every request passes through around its view: the server, request ids,
  the access line, headers, problem documents, body validation, rendering, the security policy
  and maintenance mode.
- ``myservice.data``: the engine, the sessions (one per request, or one for a script), reads on
  replicas, the bounds on every wait for the database, and the models.
"""

import sys

from pyramid.config import Configurator

from myservice.data.errors import OperatorError


def main(global_config, **settings):
    """Return the WSGI application."""
    with Configurator(settings=settings) as config:
        config.include(includeme)
    return config.make_wsgi_app()


def paste_app(global_config, **settings):
    """The ``paste.app_factory`` entry point (pserve, gunicorn --paste, pshell): ``main``, with
    an operator's mistake (a setting missing or wrong) said in one line, with its exit status,
    instead of a traceback that ends in it."""
    try:
        return main(global_config, **settings)
    except OperatorError as error:
        print(f"myservice: {error}", file=sys.stderr)
        raise SystemExit(error.exit_status) from None


def includeme(config):
    """The whole service, one concern per include."""
    config.include(".edge.requestid")  # X-Request-ID on every response and log line
    config.include(".edge.accesslog")  # one access line per request, however many attempts
    config.include(".data.db")  # engine, session factory, request.dbsession, pyramid_tm, retry
    config.include(".data.timeouts")  # what bounds each wait on the database
    config.include(".edge.problems")  # RFC 9457 error documents for every failure
    config.include(".edge.security")  # bearer tokens; views need the "read" or "write" scope
    config.include(".edge.headers")  # nosniff, no-store, and CORS for myservice.cors_origins
    config.include(".edge.consistency")  # Consistency-Token, with read replicas only
    config.include(".edge.jsonbody")  # the JSON body guard: size, media type, strict JSON
    config.include(".edge.rendering")  # JSON responses from pydantic models
    config.include(".api.pagination")  # signed keyset cursors
    config.include(".api.routes")
    config.include(".api.changes")  # GET /changes, and the changes every write appends
    config.include(".api.idempotency")  # Idempotency-Key on POSTs: its setting
    config.include(".api.metrics")  # GET /metrics: Prometheus counters of requests, the pool
    config.include(".edge.maintenance")  # read-only mode: writes refused, at startup or at run time
    config.scan(".api.views")
    config.include(".api.openapi")  # GET /openapi.json
    config.include(".api.docspage")  # GET /docs: that document for people (Swagger UI, offline)
    config.include(".edge.requestclass")  # the request class, built once with all of the above
