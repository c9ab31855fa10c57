from typing import Literal

from pydantic import BaseModel
from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from ..apidoc import Reply, operation


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(Health):
    database: Literal["ok"] = "ok"


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
@operation("The database answers", responses={200: Reply("ready", Ready)})
def ready(request):
    """The process can serve: the database answers a query."""
    try:
        request.dbsession.execute(select(1))
    except DBAPIError:
        raise HTTPServiceUnavailable(
            "the database is unavailable", headers={"Retry-After": "5"}
        ) from None
    return Ready()
