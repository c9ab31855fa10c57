"""Problem documents (RFC 9457): what every refused request must answer, in process or from a
real server."""

import json


def status_of(response):
    """The status code of WebTest's response, or of a real server's ``Reply``."""
    return response.status_int if hasattr(response, "status_int") else response.status


def assert_problem(response, status):
    """``response`` (WebTest's, or a real server's ``Reply``) is a problem document of
    ``status``; returns the document."""
    assert status_of(response) == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["status"] == status
    assert problem["type"] and problem["title"]
    return problem
