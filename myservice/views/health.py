import logging

from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.view import view_config
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from ..timeouts import DatabaseTimeout

log = logging.getLogger(__name__)

#: Seconds /health/ready waits for the database's answer (``myservice.timeouts``).
READY_TIMEOUT = 1.0


@view_config(route_name="health", request_method="GET", renderer="json")
def health(request):
    """The process is up. Touches no database."""
    return {"status": "ok"}


@view_config(route_name="health_ready", request_method="GET", renderer="json")
def ready(request):
    """The process can serve: the database answers a query within ``READY_TIMEOUT``."""
    try:
        request.dbsession.execute(select(1), execution_options={"client_timeout": READY_TIMEOUT})
    except (DBAPIError, DatabaseTimeout) as error:
        log.warning("not ready: %s", getattr(error, "orig", error))
        raise HTTPServiceUnavailable(
            "the database is unavailable", headers={"Retry-After": "5"}
        ) from None
    return {"status": "ok", "database": "ok"}
