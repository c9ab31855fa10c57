"""GET /docs: the OpenAPI document rendered for people by Swagger UI, with no internet.

Swagger UI is a PyPI package's static files, served by the app itself, so the page works where
no CDN can be reached. The package is ``openapi-ui-bundles`` (Swagger UI 5.17, which reads
OpenAPI 3.1; ``swagger-ui-bundle`` ships Swagger UI 4, which refuses 3.1 documents). The page
is public, as ``/openapi.json`` is: it shows the contract; calls made from it need a token
(its Authorize button takes one).
"""

from openapi_ui_bundles import __version__ as bundles_version
from openapi_ui_bundles.swagger_ui import static_path as swagger_ui_path
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED

from myservice.api.apidoc import Reply, operation

#: Where the Swagger UI files are served: the path carries the package's version, so a browser
#: may keep them for long; a new version has new URLs.
ASSETS = f"docs/swagger-ui-{bundles_version}"
ASSETS_MAX_AGE = 30 * 24 * 60 * 60

#: The page: Swagger UI pointed at /openapi.json. ``validatorUrl: null`` keeps it from sending
#: the document to the online validator; the favicon link saves the browser a 404.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>myservice API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{script}"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{openapi}",
      dom_id: "#swagger-ui",
      validatorUrl: null,
      deepLinking: true,
    }});
  </script>
</body>
</html>
"""


@operation(
    "This document as a page for people (Swagger UI)",
    responses={200: Reply("an HTML page", schema={"type": "string"}, media="text/html")},
    database=False,
)
def docs_page(request):
    """The page, with URLs relative to where the app is mounted (``SCRIPT_NAME``)."""
    body = PAGE.format(
        css=asset_path(request, "swagger-ui.css"),
        icon=asset_path(request, "favicon-32x32.png"),
        script=asset_path(request, "swagger-ui-bundle.js"),
        openapi=request.route_path("openapi"),
    )
    return Response(body, content_type="text/html", charset="utf-8")


def asset_path(request, name):
    return request.static_path(str(swagger_ui_path / name))


def includeme(config):
    config.add_static_view(
        ASSETS,
        str(swagger_ui_path),
        cache_max_age=ASSETS_MAX_AGE,
        permission=NO_PERMISSION_REQUIRED,
    )
    config.add_route("docs", "/docs")
    config.add_view(
        docs_page, route_name="docs", request_method="GET", permission=NO_PERMISSION_REQUIRED
    )
