import logging
from typing import Literal

from pydantic import BaseModel
from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from sqlalchemy.exc import DBAPIError

from myservice.api.apidoc import Reply, operation
from myservice.data.models.maintenance import read_mode
from myservice.data.timeouts import DatabaseTimeout
from myservice.edge.maintenance import mode_name

log = logging.getLogger(__name__)

#: Seconds /health/ready waits for the database's answer (``myservice.data.timeouts``).
READY_TIMEOUT = 1.0


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(Health):
    database: Literal["ok"] = "ok"
    #: read-only while maintenance mode is on (``myservice.edge.maintenance``): reads are served.
    mode: Literal["read-write", "read-only"]


class ReplicaHealth(BaseModel):
    name: str
    #: up: serves reads; lagging: beyond myservice.max_replica_lag_ms; down: does not answer.
    state: Literal["up", "lagging", "down"]
    #: milliseconds behind the primary, as this process last saw it (null: never seen)
    lag_ms: int | None


class ReadyWithReplicas(Ready):
    """Only with replicas configured (``myservice.replica_urls``); the member is absent else."""

    replicas: list[ReplicaHealth] = []


@view_config(
    route_name="health", request_method="GET", renderer="json", permission=NO_PERMISSION_REQUIRED
)
@operation("The process is up", responses={200: Reply("up", Health)}, database=False)
def health(request):
    """The process is up. Touches no database."""
    return Health()


@view_config(
    route_name="health_ready",
    request_method="GET",
    renderer="json",
    permission=NO_PERMISSION_REQUIRED,
)
@operation("The database answers", responses={200: Reply("ready", ReadyWithReplicas)})
def ready(request):
    """The process can serve: the database answers a query (the maintenance switch's row,
    read afresh, so it also reports the mode) within ``READY_TIMEOUT``. Read-only is ready
    (200): reads are served. With replicas, the primary is the one checked (reads fall back
    to it), and each replica's state is reported as this process's monitor last saw it."""
    try:
        read_only, _ = read_mode(request.primary_session, client_timeout=READY_TIMEOUT)
    except (DBAPIError, DatabaseTimeout) as error:
        log.warning("not ready: %s", getattr(error, "orig", error))
        raise HTTPServiceUnavailable(
            "the database is unavailable", headers={"Retry-After": "5"}
        ) from None
    mode = mode_name(request.registry["read_only"].learn(read_only))
    replicas = request.registry["replicas"]
    if replicas is None:
        return Ready(mode=mode)
    return ReadyWithReplicas(mode=mode, replicas=replicas.health())
