"""Views that only tests need, added to the service with ``tests.support.app.app_with_views``:
a conflict that pyramid_retry replays, a view that logs, and one whose statement fails with
personal data bound to it (conftest's ``views_client``)."""

import logging

from sqlalchemy import text
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


#: Personal data that a failing statement was given: no log line may show it.
SECRET_EMAIL = "renee.secret@example.org"


def fail_a_statement_with_personal_data(request):
    """A bug: a statement that fails after it was sent, with an email bound to it."""
    request.dbsession.execute(
        text("SELECT id FROM no_such_table WHERE email = :email"), {"email": SECRET_EMAIL}
    )


#: What conftest's ``views_app`` serves besides the API.
TEST_VIEWS = {
    "/test/conflict-once": conflict_on_the_first_attempt,
    "/test/conflict-always": conflict_on_every_attempt,
    "/test/log": log_from_the_view,
    "/test/failing-statement": fail_a_statement_with_personal_data,
}
