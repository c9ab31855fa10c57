"""schemathesis holds the service to its own OpenAPI document, in process (WSGI).

Every operation gets generated requests, valid and invalid, and every check schemathesis has:
no 5xx, only documented statuses, content types, bodies and headers, every schema-valid request
accepted and every invalid one rejected. The stateful test then follows the document's links
(POST /users and POST /groups to the created resource, PUT member to the membership) so that
sequences reach real ids. Each example, and each stateful scenario, runs in a transaction that
is rolled back afterwards, so the database starts empty every time and the suite stays apart.

Seeded and derandomized: CI sees the same requests on every run.
"""

import hypothesis
import pytest
import schemathesis
import webtest
from hypothesis import HealthCheck
from pyramid.paster import get_appsettings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

import myservice
from myservice.api.pagination import cursor_serializer
from tests.support.app import rolled_back
from tests.support.client import bearer
from tests.support.paths import DEVELOPMENT_INI

#: Examples per operation and phase; the stateful test runs as many scenarios.
EXAMPLES = 25

MEMBER = "/groups/{id}/members/{user_id}"

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261123,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        # The sequences follow the document's own links, not links schemathesis guesses.
        "phases": {"stateful": {"inference": {"algorithms": []}}},
        "checks": {
            # If-Match is checked before the body: a stale one is refused first, valid or not.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "5xx"]
            },
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "409", "412", "413", "415", "422", "5xx")
                ]
            },
        },
    }
)


def documented_app():
    """The service as development.ini builds it, over a database it never opens: only its
    /openapi.json is read, when this module is collected (parametrize needs the operations then).
    Requests go to the tests' ``app``."""
    return myservice.main({}, **get_appsettings(str(DEVELOPMENT_INI), name="main"))


#: A cursor the service issued (signed with development.ini's secret, as the tests' app is).
ISSUED_CURSOR = (
    cursor_serializer(get_appsettings(str(DEVELOPMENT_INI), name="main")["myservice.secret"])
    .dumps({"after": 0})
    .decode()
)


def map_case(context, case):
    """A valid request's cursor is one the service issued: the document says so, but no JSON
    schema can tell a signed cursor from a forged one (those are 400, which negative cases
    still try)."""
    if "cursor" in case.query and case.meta and case.meta.generation.mode.is_positive:
        case.query["cursor"] = ISSUED_CURSOR
    return case


def load_schema():
    loaded = schemathesis.openapi.from_wsgi("/openapi.json", documented_app(), config=CONFIG)
    loaded.hook(map_case)
    return loaded


schema = load_schema()


@pytest.fixture(scope="session")  # hypothesis refuses function-scoped fixtures
def auth_headers(token):
    """A Bearer token with the read and write scopes, committed before any example runs."""
    return bearer(token)


def authenticated(case, auth_headers):
    """``case`` with the token, unless its headers are the invalid part on purpose (a missing
    or malformed ``Authorization`` must then be a 401)."""
    if not (case.meta and case.meta.is_negative_at(ParameterLocation.HEADER)):
        case.headers = {**(case.headers or {}), **auth_headers}
    return case


@schema.parametrize()
def test_every_operation_keeps_to_the_document(app, case, auth_headers):
    with rolled_back(app):
        authenticated(case, auth_headers).call_and_validate(app=app)


def test_sequences_that_follow_the_links_keep_to_the_document(app, auth_headers):
    reached = set()

    # A schema of its own: the one above carries state from the tests that used it.
    class Sequences(load_schema().as_state_machine()):
        def setup(self):
            self.transaction = rolled_back(app)
            self.transaction.__enter__()
            self.requests = 0
            user = {"username": "member", "email": "member@example.com"}
            self.member = webtest.TestApp(app).post_json("/users", user, headers=auth_headers)

        def before_call(self, case):
            authenticated(case, auth_headers)
            if case.operation.path == MEMBER:  # the link from POST /groups names the group
                case.path_parameters["user_id"] = self.member.json["id"]
            if case.headers and "Idempotency-Key" in case.headers:
                # A key names one request: reusing it for another body is 422 by design,
                # which no schema can say. So each request of a scenario gets its own key.
                self.requests += 1
                case.headers["Idempotency-Key"] += f"-{self.requests}"

        def teardown(self):
            self.transaction.__exit__(None, None, None)

        def after_call(self, response, case):
            reached.add((case.operation.label, response.status_code))

        def get_call_kwargs(self, case):
            return {"app": app}

    Sequences.run(
        settings=hypothesis.settings(
            max_examples=2 * EXAMPLES,
            stateful_step_count=10,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links led to real resources: created users and groups were read and changed,
    # and a user joined a created group.
    assert {
        ("GET /users/{id}", 200),
        ("PATCH /groups/{id}", 200),
        ("PUT /groups/{id}/members/{user_id}", 201),
    } <= reached, sorted(reached)
