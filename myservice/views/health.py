import logging

from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.view import view_config
from sqlalchemy.exc import DBAPIError

from ..maintenance import mode_name
from ..models.maintenance import read_mode
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
    """The process can serve: the database answers a query (the maintenance switch's row,
    read afresh, so it also reports the mode) within ``READY_TIMEOUT``. Read-only is ready
    (200): reads are served."""
    try:
        read_only, _ = read_mode(request.dbsession, client_timeout=READY_TIMEOUT)
    except (DBAPIError, DatabaseTimeout) as error:
        log.warning("not ready: %s", getattr(error, "orig", error))
        raise HTTPServiceUnavailable(
            "the database is unavailable", headers={"Retry-After": "5"}
        ) from None
    mode = mode_name(request.registry["read_only"].learn(read_only))
    return {"status": "ok", "database": "ok", "mode": mode}
