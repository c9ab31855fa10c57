"""Every URL of the API; the views that answer them live in ``myservice.views``."""


def includeme(config):
    config.add_route("health", "/health")
    config.add_route("health_ready", "/health/ready")
    config.add_route("users", "/users")
    config.add_route("user", r"/users/{id:\d{1,19}}")
