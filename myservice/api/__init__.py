"""The API: its routes, its views grouped by resource, and what it says of itself.

``views`` holds one module per resource, each view thin (parse, call the model, render) and
stating its OpenAPI operation beside it (``apidoc``); ``schemas`` the shapes they read and
write; ``resource`` what every resource's views share (find, ETags, save, record a change).
Only Pyramid's scan imports ``views``. ``openapi`` and ``docspage`` describe it, ``changes`` is the
feed every write appends to, ``idempotency`` replays a POST, ``metrics`` counts requests.
"""
