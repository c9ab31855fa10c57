"""myservice: users, groups and memberships as a Pyramid JSON service."""

from pyramid.config import Configurator


def main(global_config, **settings):
    """Return the WSGI application (the ``paste.app_factory`` entry point)."""
    with Configurator(settings=settings) as config:
        config.include(includeme)
    return config.make_wsgi_app()


def includeme(config):
    """The whole service, one concern per include."""
    config.include(".requestid")  # X-Request-ID on every response and log line
    config.include(".accesslog")  # one access line per request, however many attempts it took
    config.include(".db")  # engine, session factory, request.dbsession, pyramid_tm, retry
    config.include(".timeouts")  # what bounds each wait on the database
    config.include(".problems")  # RFC 9457 error documents for every failure
    config.include(".security")  # bearer tokens; views need the "read" or "write" scope
    config.include(".headers")  # nosniff, no-store, and CORS for myservice.cors_origins
    config.include(".validation")  # the JSON body guard: size, media type, strict JSON
    config.include(".rendering")  # JSON responses from pydantic models
    config.include(".pagination")  # signed keyset cursors
    config.include(".routes")
    config.include(".changes")  # GET /changes, and the changes every write appends
    config.include(".idempotency")  # Idempotency-Key on POSTs: its setting
    config.include(".metrics")  # GET /metrics: Prometheus counters of requests, retries, the pool
    config.include(".maintenance")  # read-only mode: writes refused, at startup or at run time
    config.scan(".views")
    config.include(".openapi")  # GET /openapi.json
    config.include(".docspage")  # GET /docs: that document for people (Swagger UI, offline)
