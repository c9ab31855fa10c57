"""GET /health and GET /health/ready."""


def test_health_is_ok_without_the_database(testapp):
    response = testapp.get("/health")
    assert response.json == {"status": "ok"}
    assert response.content_type == "application/json"


def test_ready_checks_the_database(testapp):
    ready = testapp.get("/health/ready").json
    assert ready == {"status": "ok", "database": "ok", "mode": "read-write"}
