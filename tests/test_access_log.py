"""The access line: one per request, however many attempts it took, with what an operator needs.

In process, the lines are formatted by the JSON formatter as the ini files configure it
(``[formatter_json]``) and parsed back; over a real server, ``pserve`` writes them to stderr
with the ini's ``formatter`` switched to ``json``. Replayed requests come from a view that
meets a conflict on its first attempt (a ``StaleDataError``, as a versioned UPDATE that lost a
race raises it) and that pyramid_retry replays, as it does any transient conflict.
"""

import configparser
import json
import logging
import threading
import time
import uuid
from datetime import datetime

import pytest
from pythonjsonlogger.orjson import OrjsonFormatter

from myservice.edge.accesslog import AccessRecord, Served
from myservice.edge.requestid import JsonLogFormatter
from tests.support.app import collected_log
from tests.support.client import call
from tests.support.paths import DEVELOPMENT_INI
from tests.support.servers import running_server
from tests.support.views import SECRET_EMAIL


@pytest.fixture
def json_log():
    """Lines myservice logs during the test, formatted as ``[formatter_json]`` of the ini files
    says, each parsed back into a dict."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(DEVELOPMENT_INI)
    formatter = JsonLogFormatter(ini["formatter_json"]["format"])
    with collected_log(formatter) as logged:
        yield lambda: [json.loads(line) for line in logged()]


def access_lines(records, request_id):
    return [
        record
        for record in records
        if record["logger"] == "myservice.access" and record["request_id"] == request_id
    ]


def assert_access_line(record, *, method, path, route, status, retries=0, token=None):
    assert record["level"] == "INFO"
    assert datetime.fromisoformat(record["time"]).utcoffset().total_seconds() == 0
    assert record["method"] == method
    assert record["path"] == path
    assert record["route"] == route
    assert record["status"] == status
    assert isinstance(record["duration_ms"], float) and record["duration_ms"] > 0
    assert record["retries"] == retries
    assert record["token"] == token
    assert record["message"].startswith(f"{method} {path}")


@pytest.mark.parametrize("token", [None, "deploy-bot"])
def test_the_access_line_is_the_json_python_json_logger_would_write(token):
    """The access line's record skips the logging module's machinery, and the JSON formatter
    writes it in one step (``AccessRecord``): the same keys in the same order, the same values,
    as python-json-logger's own ``format`` makes of the same record."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(DEVELOPMENT_INI)
    formatter = JsonLogFormatter(ini["formatter_json"]["format"])
    served = Served("req-1", "GET", "/users?limit=2", "users", 200, 0.0012345, 1, token)
    record = AccessRecord(served, time.time(), threading.current_thread())

    ours = json.loads(formatter.format(record))
    theirs = json.loads(OrjsonFormatter.format(formatter, record))

    assert list(ours.items()) == list(theirs.items())
    assert ours["message"] == "GET /users?limit=2 200 1.2ms route=users retries=1" + (
        f" token={token}" if token else ""
    )


def test_the_access_line_has_its_responses_thread_and_time_though_the_log_thread_makes_it(
    testapp,
):
    """The serving thread only queues the line's facts; the record is made later, by the log's
    thread (here the test's, which hands the queue over): its thread and time are still those
    of the request's response."""
    formatter = logging.Formatter("%(name)s %(threadName)s %(thread)d %(created)f")
    with collected_log(formatter) as logged:
        serving = threading.Thread(target=lambda: testapp.get("/health"), name="serving-thread")
        before = time.time()
        serving.start()
        serving.join(timeout=60)
        after = time.time()
        lines = [line.split() for line in logged() if line.startswith("myservice.access ")]

    [(_, thread_name, thread, created)] = lines
    assert (thread_name, int(thread)) == ("serving-thread", serving.ident)
    assert before <= float(created) <= after


def test_a_request_is_logged_as_json_with_its_id_route_status_and_duration(testapp, json_log):
    testapp.post_json("/users", {"username": "logged", "email": "logged@example.org"})

    testapp.get("/users?username=logged", headers={"X-Request-ID": "json-line-1"})

    [line] = access_lines(json_log(), "json-line-1")
    assert_access_line(line, method="GET", path="/users", route="users", status=200, token="tests")
    # username is a filter, not a paging parameter: its value is not shown
    assert line["message"].startswith("GET /users?username=*** 200 ")


def test_an_unrouted_request_is_logged_with_no_route(testapp, json_log):
    testapp.get("/nowhere", headers={"X-Request-ID": "json-line-404"}, status=404)

    [line] = access_lines(json_log(), "json-line-404")
    assert_access_line(line, method="GET", path="/nowhere", route=None, status=404)


def test_the_name_of_the_requests_token_is_logged_never_its_secret(testapp, token, json_log):
    testapp.get("/users", headers={"X-Request-ID": "json-line-token"})
    testapp.get("/health", headers={"X-Request-ID": "json-line-no-token"})  # looks none up

    records = json_log()
    [with_token] = access_lines(records, "json-line-token")
    assert_access_line(
        with_token, method="GET", path="/users", route="users", status=200, token="tests"
    )
    assert with_token["message"].endswith(" token=tests")
    assert token not in str(records)
    [without] = access_lines(records, "json-line-no-token")
    assert without["token"] is None
    assert "token=" not in without["message"]


def test_a_replayed_request_is_logged_once_with_its_retries_and_final_status(
    views_client, json_log
):
    reply = views_client.get("/test/conflict-once", headers={"X-Request-ID": "json-line-retried"})

    assert reply.json == {"attempt": 2}
    [line] = access_lines(json_log(), "json-line-retried")
    route = "/test/conflict-once"
    assert_access_line(
        line, method="GET", path=route, route=route, status=200, retries=1, token="tests"
    )


def test_a_request_that_conflicts_on_every_attempt_is_logged_once_with_its_503(
    views_client, json_log
):
    views_client.get("/test/conflict-always", headers={"X-Request-ID": "json-line-503"}, status=503)

    [line] = access_lines(json_log(), "json-line-503")
    route = "/test/conflict-always"
    assert_access_line(
        line, method="GET", path=route, route=route, status=503, retries=2, token="tests"
    )


def test_application_log_lines_carry_the_request_id_in_json(views_client, json_log):
    views_client.get("/test/log", headers={"X-Request-ID": "json-app-line"})

    [line] = [record for record in json_log() if record["logger"] == "myservice.test"]
    assert line["request_id"] == "json-app-line"
    assert line["level"] == "WARNING"
    assert line["message"] == "something the view noticed"


def test_the_access_line_keeps_paging_parameters_and_hides_every_other_value(testapp, json_log):
    testapp.get(
        "/users?email=ada%40example.org&username=ada&limit=1",
        headers={"X-Request-ID": "json-line-redacted"},
    )

    [line] = access_lines(json_log(), "json-line-redacted")
    assert line["message"].startswith("GET /users?email=***&username=***&limit=1 200 ")
    assert "ada" not in json.dumps(line)


def test_a_failing_statement_is_logged_without_its_parameters(views_client, log_lines):
    views_client.get("/test/failing-statement", status=(500, 503))

    logged = "\n".join(log_lines())
    assert "no_such_table" in logged  # the statement and its traceback are logged ...
    assert SECRET_EMAIL not in logged  # ... but not what was bound to it


def test_a_real_server_logging_json_writes_one_access_line_per_request(db_url, token, tmp_path):
    request_id = f"real-{uuid.uuid4().hex}"
    overrides = {"formatter": "json"}
    with running_server(tmp_path, db_url, overrides, token) as server:
        reply = call(server, "GET", "/users?limit=1", headers={"X-Request-ID": request_id})
        assert reply.status == 200
    records = [json.loads(line) for line in server.log_lines() if line.startswith("{")]

    [line] = access_lines(records, request_id)
    assert_access_line(line, method="GET", path="/users", route="users", status=200, token="tests")
    assert line["message"].startswith("GET /users?limit=1 200 ")
