"""The ``json`` renderer: pydantic models (and plain dicts) to JSON bytes, in one Rust call.

Views return response models built inside the view, so every attribute is read while the
transaction is still open; nothing is loaded after commit.
"""

import pydantic_core


def json_renderer_factory(info):
    def render(value, system):
        request = system.get("request")
        if request is not None:
            request.response.content_type = "application/json"
        return pydantic_core.to_json(value)

    return render


def includeme(config):
    config.add_renderer("json", json_renderer_factory)
