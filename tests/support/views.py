"""Views that only tests need, added to the service with ``tests.support.app.app_with_views``:
a conflict that pyramid_retry replays, and a view that logs (conftest's ``views_client``)."""

import logging

from sqlalchemy.orm.exc import StaleDataError


def conflict_on_the_first_attempt(request):
    if request.environ["retry.attempt"] == 0:
        raise StaleDataError("UPDATE statement on table 'users' expected to update 1 row")
    return {"attempt": request.environ["retry.attempt"] + 1}


def conflict_on_every_attempt(request):
    raise StaleDataError("UPDATE statement on table 'users' expected to update 1 row")


def log_from_the_view(request):
    logging.getLogger("myservice.test").warning("something the view noticed")
    return {"ok": True}


#: What conftest's ``views_app`` serves besides the API.
TEST_VIEWS = {
    "/test/conflict-once": conflict_on_the_first_attempt,
    "/test/conflict-always": conflict_on_every_attempt,
    "/test/log": log_from_the_view,
}
