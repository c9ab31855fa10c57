"""The URLs of the resources; their views live in ``myservice.api.views``. (``/changes`` and
``/openapi.json`` are routed by their own includes, beside their views.)"""

ID = r"\d{1,19}"


def includeme(config):
    config.add_route("health", "/health")
    config.add_route("health_ready", "/health/ready")
    config.add_route("users", "/users")
    config.add_route("users_bulk", "/users/bulk")
    config.add_route("user", f"/users/{{id:{ID}}}")
    config.add_route("user_groups", f"/users/{{id:{ID}}}/groups")
    config.add_route("groups", "/groups")
    config.add_route("group", f"/groups/{{id:{ID}}}")
    config.add_route("group_members", f"/groups/{{id:{ID}}}/members")
    config.add_route("group_member", f"/groups/{{id:{ID}}}/members/{{user_id:{ID}}}")
