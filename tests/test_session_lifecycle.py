"""How a request creates, uses and closes its session: proved against the real machinery.

These tests need requests that really commit, so they build the service the way ``main()``
does (``config.include(myservice.includeme)``) on its own engine, with no test connection in
between, and add a few views that only tests need: one that writes and then raises, one that
writes and then returns a 4xx, ones that meet a real database conflict. Every row they commit
is deleted afterwards (``empty_tables``).
"""

import pytest
from psycopg.pq import TransactionStatus
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest
from sqlalchemy import event, select, text, update
from sqlalchemy.orm.exc import StaleDataError
from zope.sqlalchemy import mark_changed

import myservice
from myservice.api.changes import record_change
from myservice.data.models import User
from myservice.data.models.change import CHANGES
from myservice.data.models.meta import utcnow
from myservice.data.models.token import TOKENS
from myservice.data.roundtrips import CarryingCursor
from tests.support.app import app_with_views, with_token

SERIALIZATION_FAILURE = (
    "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$"
)


def add_user(request, name):
    """Add a user; with ``?change=1`` also a change to the feed, whose statement PostgreSQL
    then sends with the COMMIT, in one message (``myservice.data.roundtrips``)."""
    user = User(username=name, email=f"{name}@example.com")
    request.dbsession.add(user)
    request.dbsession.flush()
    if request.params.get("change"):
        record_change(request, "user.created", f"/users/{user.id}")


def write_then_succeed(request):
    add_user(request, "committed")
    return {"ok": True}


def write_then_raise(request):
    add_user(request, "raised")
    raise RuntimeError("boom: SELECT secret FROM internals")


def write_then_return_400(request):
    add_user(request, "returned")
    return HTTPBadRequest("returned, not raised")


def attempts_counter(request):
    attempts = request.registry.setdefault("test_attempts", [])
    attempts.append(request.environ["retry.attempt"])
    return attempts


def conflict_on_first_attempt(request):
    """A real PostgreSQL serialization failure (SQLSTATE 40001) on the first attempt only."""
    attempts = attempts_counter(request)
    add_user(request, f"attempt{len(attempts)}")
    if len(attempts) == 1:
        request.dbsession.execute(text(SERIALIZATION_FAILURE))
    return {"attempts": len(attempts)}


def conflict_every_time(request):
    attempts_counter(request)
    add_user(request, "never")
    request.dbsession.execute(text(SERIALIZATION_FAILURE))


def stale_every_time(request):
    """A versioned UPDATE that matches no row on every attempt, as when a concurrent writer
    changed the row since it was read (any database)."""
    attempts_counter(request)
    session = request.dbsession
    user = User(username="never", email="never@example.com")
    session.add(user)
    session.flush()
    # what a concurrent writer's commit does to the row; the session's copy is left at 1
    session.execute(text("UPDATE users SET version = version + 1 WHERE id = :id"), {"id": user.id})
    user.full_name = "lost"
    session.flush()  # UPDATE ... WHERE version = 1 matches no row: StaleDataError


def conflict_at_commit_on_first_attempt(request):
    """A serialization failure raised by the COMMIT itself (a deferred constraint trigger)."""
    attempts = attempts_counter(request)
    add_user(request, f"commit{len(attempts)}")
    if len(attempts) == 1:
        for statement in (
            "CREATE TEMP TABLE commit_trap (x int) ON COMMIT DROP",
            "CREATE FUNCTION pg_temp.trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$",
            "CREATE CONSTRAINT TRIGGER trap AFTER INSERT ON commit_trap "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.trap()",
            "INSERT INTO commit_trap VALUES (1)",
        ):
            request.dbsession.execute(text(statement))
    return {"attempts": len(attempts)}


#: Ends this request's own PostgreSQL backend: its connection dies as a database restart would.
TERMINATE_MY_BACKEND = "SELECT pg_terminate_backend(pg_backend_pid())"


def connection_dies_on_first_attempt(request):
    """The pooled connection dies under a statement, before anything was committed."""
    attempts = attempts_counter(request)
    add_user(request, f"died{len(attempts)}")
    if len(attempts) == 1:
        request.dbsession.execute(text(TERMINATE_MY_BACKEND))
    return {"attempts": len(attempts)}


def kill_my_backend_after_an_insert_into(session, table):
    """A trigger (for this session only) that ends its backend after a row is inserted."""
    session.execute(
        text(
            "CREATE FUNCTION pg_temp.kill() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM ({TERMINATE_MY_BACKEND}); RETURN NULL; END $$"
        )
    )
    session.execute(
        text(
            f"CREATE TRIGGER kill AFTER INSERT ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION pg_temp.kill()"
        )
    )


def connection_dies_at_commit(request):
    """The connection dies under the INSERT that the COMMIT flushes (a trigger ends the backend).

    The view leaves its new user unflushed, so the statement runs inside pyramid_tm's commit,
    after the transaction was handed over: had it reached the database, it might be committed.
    """
    attempts_counter(request)
    kill_my_backend_after_an_insert_into(request.dbsession, "users")
    request.dbsession.add(User(username="in-doubt", email="in-doubt@example.com"))
    return {"ok": True}


def stale_on_first_attempt(request):
    """A lost race of a versioned UPDATE, as SQLAlchemy reports it (any database)."""
    attempts = attempts_counter(request)
    add_user(request, f"stale{len(attempts)}")
    if len(attempts) == 1:
        raise StaleDataError("UPDATE statement on table 'users' expected to update 1 row")
    return {"attempts": len(attempts)}


def connection_dies_with_the_commit(request):
    """The connection dies under the feed's statement, which carries the COMMIT on PostgreSQL
    (``myservice.data.roundtrips``): the server may have committed before it died."""
    attempts_counter(request)
    kill_my_backend_after_an_insert_into(request.dbsession, "changes")
    add_user(request, "in-doubt")
    record_change(request, "user.created", "/users/0")
    return {"ok": True}


def fail_at_commit(request):
    """Write a row that breaks a deferred foreign key: the COMMIT fails, not the view."""
    session = request.dbsession
    add_user(request, "doomed")
    temp = "" if session.bind.dialect.name == "sqlite" else " ON COMMIT DROP"
    session.execute(text(f"CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY){temp}"))
    session.execute(
        text(
            "CREATE TEMP TABLE child (parent_id INTEGER REFERENCES parent (id) "
            f"DEFERRABLE INITIALLY DEFERRED){temp}"
        )
    )
    session.execute(text("INSERT INTO child VALUES (42)"))
    mark_changed(session, request.tm)  # text() writes are invisible to zope.sqlalchemy
    return {"ok": True}


def raw_write_unmarked(request):
    request.dbsession.execute(
        text(
            "INSERT INTO users (username, email, email_key, full_name, created_at, updated_at,"
            " version) VALUES ('unmarked', 'unmarked@example.com', 'unmarked@example.com', '',"
            " :now, :now, 1)"
        ),
        {"now": "2026-01-01 00:00:00"},
    )
    return {"ok": True}


TEST_VIEWS = {
    "/test/write-then-succeed": write_then_succeed,
    "/test/write-then-raise": write_then_raise,
    "/test/write-then-return-400": write_then_return_400,
    "/test/conflict-on-first-attempt": conflict_on_first_attempt,
    "/test/conflict-every-time": conflict_every_time,
    "/test/stale-every-time": stale_every_time,
    "/test/conflict-at-commit": conflict_at_commit_on_first_attempt,
    "/test/stale-on-first-attempt": stale_on_first_attempt,
    "/test/connection-dies": connection_dies_on_first_attempt,
    "/test/connection-dies-at-commit": connection_dies_at_commit,
    "/test/connection-dies-with-the-commit": connection_dies_with_the_commit,
    "/test/fail-at-commit": fail_at_commit,
    "/test/raw-write-unmarked": raw_write_unmarked,
}


@pytest.fixture
def real_app(app_settings, empty_tables):
    # The maintenance switch is read by the app's first write only, so that the statements
    # each request sends are known exactly.
    settings = {**app_settings, "myservice.maintenance_check_seconds": "3600"}
    return app_with_views(settings, TEST_VIEWS)


@pytest.fixture
def client(real_app, token):
    return with_token(real_app, token)


@pytest.fixture
def engine(real_app):
    return real_app.registry["dbsession_factory"].kw["bind"]


@pytest.fixture(params=["stale-version", "serialization-failure"])
def conflict_every_time_path(request, is_postgres):
    """A view that meets a conflict on every attempt: a versioned UPDATE that matches no row
    (any database), or PostgreSQL's serialization failure."""
    if request.param == "serialization-failure":
        if not is_postgres:
            pytest.skip("SQLite raises no serialization failures: its writers take turns")
        return "/test/conflict-every-time"
    return "/test/stale-every-time"


def usernames(engine):
    with engine.connect() as connection:
        return connection.scalars(select(User.username).order_by(User.username)).all()


def feed_resources(engine):
    with engine.connect() as connection:
        return connection.scalars(select(CHANGES.c.resource).order_by(CHANGES.c.seq)).all()


# -- commit and abort ----------------------------------------------------------------------


def test_a_2xx_commits(client, engine):
    client.post("/test/write-then-succeed", status=200)
    assert usernames(engine) == ["committed"]


def test_a_raised_exception_aborts_and_answers_a_bare_500(client, engine):
    response = client.post("/test/write-then-raise", status=500)
    assert response.json == {"type": "about:blank", "title": "Internal Server Error", "status": 500}
    assert "boom" not in response.text and "SELECT" not in response.text
    assert usernames(engine) == []


def test_an_unexpected_error_is_logged_with_its_traceback_and_request_id(client, log_lines):
    response = client.post(
        "/test/write-then-raise", headers={"X-Request-ID": "req-500"}, status=500
    )
    assert response.headers["X-Request-ID"] == "req-500"
    [line] = [line for line in log_lines() if " ERROR " in line]
    assert line.startswith("[req-500] ERROR [myservice.edge.problems] unexpected error")
    assert "Traceback" in line and "RuntimeError: boom" in line


def test_a_returned_4xx_aborts(client, engine):
    client.post("/test/write-then-return-400", status=400)
    assert usernames(engine) == []


def test_a_failed_api_request_leaves_no_trace(client, engine):
    client.post_json("/users", {"username": "ada", "email": "ada@example.com"}, status=201)
    client.patch_json("/users/999999", {"full_name": "x"}, status=404)
    user_id = client.get("/users?username=ada").json["items"][0]["id"]
    client.patch_json(f"/users/{user_id}", {"full_name": "x", "email": "bad"}, status=422)
    assert client.get(f"/users/{user_id}").json["full_name"] == ""


def test_a_reading_request_sends_only_its_query_and_a_writing_one_a_whole_transaction(
    client, engine
):
    sent = []  # a message per item: its first word, and "+COMMIT" when the COMMIT rides in it

    def record(connection, cursor, statement, *args):
        if "api_tokens" not in statement:  # the token's look-up (test_security.py)
            # a write's BEGIN is "BEGIN; SET LOCAL ..." on PostgreSQL: one message (test_timeouts)
            # that rides with its first statement (roundtrips.CarryingCursor)
            word = statement.split()[0].rstrip(";")
            if isinstance(cursor, CarryingCursor):
                word = f"BEGIN+{word}" if cursor.begin else word
                word = f"{word}+COMMIT" if cursor.commit else word
            sent.append(word)

    def commit(connection):
        # SQLAlchemy's COMMIT: psycopg sends one only if the transaction is still open
        driver_connection = connection.connection.dbapi_connection
        if engine.dialect.name == "postgresql":
            open_transaction = driver_connection.info.transaction_status != TransactionStatus.IDLE
        else:
            open_transaction = driver_connection.in_transaction
        sent.append("COMMIT" if open_transaction else "(committed)")

    with engine.begin() as connection:  # the token's use is noted: no write of it now
        connection.execute(update(TOKENS).values(last_used_at=utcnow()))
    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", commit)
    client.get("/users")
    assert sent == ["SELECT"]  # no BEGIN and nothing to end: one round trip
    sent.clear()
    client.post_json("/users", {"username": "ada", "email": "ada@example.com"}, status=201)
    # The user, then its change: the feed's counter and row come last, just before COMMIT.
    # On PostgreSQL that is one statement (WITH counter AS (UPDATE ...) INSERT ...) which
    # carries the COMMIT, so the counter row is not held across a round trip
    # (myservice.data.roundtrips). The app's first write reads the maintenance switch first.
    # The BEGIN rides with the first statement there too: two round trips in all for bob.
    if engine.dialect.name == "postgresql":
        first, feed = ["BEGIN+SELECT"], ["WITH+COMMIT", "(committed)"]
    else:
        first, feed = ["BEGIN", "SELECT"], ["UPDATE", "INSERT", "COMMIT"]
    assert sent == [*first, "INSERT", *feed]
    sent.clear()
    client.post_json("/users", {"username": "bob", "email": "bob@example.com"}, status=201)
    if engine.dialect.name == "postgresql":
        assert sent == ["BEGIN+INSERT", *feed]
    else:
        assert sent == ["BEGIN", "INSERT", *feed]


def test_a_write_that_sent_no_statement_leaves_no_begin_for_the_next_user_of_its_connection(
    engine, postgres_only
):
    """The BEGIN waits for the transaction's first statement (roundtrips.CarryingCursor); when
    none came, the pooled connection must not send it with the next, a read's, say."""
    with engine.connect().execution_options(access="write") as connection:
        connection.begin()
        driver_connection = connection.connection.dbapi_connection
        connection.rollback()

    driver_connection.execute("SELECT 1")  # as the next checkout's first statement would go
    assert driver_connection.info.transaction_status == TransactionStatus.IDLE


def test_raw_sql_writes_need_mark_changed_or_they_are_rolled_back(client, engine):
    client.post("/test/raw-write-unmarked", status=200)
    assert usernames(engine) == []


@pytest.fixture(params=["", "?change=1"], ids=["alone", "with-a-feed-change"])
def commit_path(request):
    """How the view's write commits: with the COMMIT alone, or (PostgreSQL) in the message of
    the feed's statement."""
    return request.param


def test_an_error_at_commit_is_a_500_problem_and_nothing_is_written(client, engine, commit_path):
    response = client.post(f"/test/fail-at-commit{commit_path}", status=500)
    assert response.content_type == "application/problem+json"
    assert usernames(engine) == []
    assert feed_resources(engine) == []
    assert engine.pool.checkedout() == 0
    # and the connection went back to the pool clean: the next writer is not locked out
    client.post_json("/users", {"username": "next", "email": "next@example.com"}, status=201)


# -- one session per request, connections returned -----------------------------------------


def test_no_state_leaks_from_one_request_to_the_next(client, engine):
    user = client.post_json("/users", {"username": "ada", "email": "ada@example.com"}).json
    client.get(f"/users/{user['id']}")
    with engine.begin() as connection:  # another writer changes the row between requests
        connection.execute(
            text("UPDATE users SET full_name = 'changed' WHERE id = :id"), {"id": user["id"]}
        )
    assert client.get(f"/users/{user['id']}").json["full_name"] == "changed"


def test_a_request_that_does_not_use_the_database_checks_out_no_connection(client, engine):
    checkouts = []
    event.listen(engine, "checkout", lambda *args: checkouts.append(1))
    client.get("/health")
    client.get("/nowhere", status=404)
    assert checkouts == []
    client.get("/users")
    assert checkouts == [1]


def test_after_every_error_path_the_pool_has_nothing_checked_out(client, engine):
    user = client.post_json("/users", {"username": "ada", "email": "ada@example.com"}).json
    url = f"/users/{user['id']}"
    client.post_json("/users", {"username": "ada", "email": "x@example.com"}, status=409)
    client.post_json("/users", {"username": "!"}, status=422)
    client.post("/users", b"{", content_type="application/json", status=400)
    client.post("/users", b"{}", content_type="text/plain", status=415)
    client.get("/users?cursor=forged", status=400)
    client.get("/users/999", status=404)
    client.put(url, status=405)
    client.patch_json(url, {"full_name": "x"}, headers={"If-Match": '"9"'}, status=412)
    client.post("/test/write-then-raise", status=500)
    client.post("/test/write-then-return-400", status=400)
    client.post("/test/fail-at-commit", status=500)
    assert engine.pool.checkedout() == 0


# -- retries -------------------------------------------------------------------------------


def test_a_conflict_raised_by_a_view_is_retried(client, engine, real_app):
    response = client.post("/test/stale-on-first-attempt", status=200)
    assert response.json == {"attempts": 2}
    assert real_app.registry["test_attempts"] == [0, 1]
    assert usernames(engine) == ["stale2"]  # the first attempt's write was rolled back


def test_a_serialization_failure_is_retried_and_succeeds(client, engine, postgres_only):
    response = client.post("/test/conflict-on-first-attempt", status=200)
    assert response.json == {"attempts": 2}
    assert usernames(engine) == ["attempt2"]


def test_a_serialization_failure_at_commit_is_retried_too(
    client, engine, postgres_only, commit_path
):
    response = client.post(f"/test/conflict-at-commit{commit_path}", status=200)
    assert response.json == {"attempts": 2}
    assert usernames(engine) == ["commit2"]
    user_id = client.get("/users?username=commit2").json["items"][0]["id"]
    assert feed_resources(engine) == ([f"/users/{user_id}"] if commit_path else [])
    assert engine.pool.checkedout() == 0


def test_a_conflict_on_every_attempt_ends_in_503_not_500(
    client, engine, real_app, conflict_every_time_path
):
    response = client.post(conflict_every_time_path, status=503)
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"]
    assert real_app.registry["test_attempts"] == [0, 1, 2]  # retry.attempts = 3
    assert usernames(engine) == []
    assert engine.pool.checkedout() == 0


def test_a_connection_that_dies_under_a_statement_is_replayed_on_a_fresh_one(
    client, engine, real_app, postgres_only
):
    response = client.post("/test/connection-dies", status=200)
    assert response.json == {"attempts": 2}
    assert usernames(engine) == ["died2"]  # the first attempt's write died with its backend
    assert engine.pool.checkedout() == 0


def test_a_connection_that_dies_at_commit_is_a_503_and_never_replayed(
    client, engine, real_app, postgres_only
):
    response = client.post("/test/connection-dies-at-commit", status=503)
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"]
    assert real_app.registry["test_attempts"] == [0]  # the write may have happened: no replay
    assert usernames(engine) == []  # here it had not: the backend died before committing
    assert engine.pool.checkedout() == 0


def test_a_connection_that_dies_under_the_message_carrying_the_commit_is_a_503_too(
    client, engine, real_app, postgres_only
):
    response = client.post("/test/connection-dies-with-the-commit", status=503)
    assert response.content_type == "application/problem+json"
    assert real_app.registry["test_attempts"] == [0]  # the COMMIT was sent: no replay
    assert usernames(engine) == []  # here it had not run: the backend died before it
    assert feed_resources(engine) == []
    assert engine.pool.checkedout() == 0


def test_the_number_of_attempts_is_the_retry_attempts_setting(app_settings, token):
    with Configurator(settings={**app_settings, "retry.attempts": "2"}) as config:
        config.include(myservice.includeme)
        config.add_route("conflict", "/conflict")
        config.add_view(stale_every_time, route_name="conflict", renderer="json")
    app = config.make_wsgi_app()
    with_token(app, token).post("/conflict", status=503)
    assert app.registry["test_attempts"] == [0, 1]
