"""GET /docs: the OpenAPI document as a page for people, served with everything it loads.

The page is opened in a real browser (Debian's chromium, which the Makefile installs, driven by
playwright) against the real server, with the browser kept off every network but loopback.
"""

from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.client import call

CHROMIUM = Path("/usr/bin/chromium")

#: No background traffic, no QUIC; with ``resolve_only`` no host name resolves.
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: What the browser must be told each file of the page is (with nosniff it will not guess).
MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}

#: Milliseconds the browser gets to load the page and render the document.
RENDER_TIMEOUT_MS = 30_000

#: (method, path) of every operation Swagger UI shows, as its visible text reads.
SHOWN_OPERATIONS = """blocks => blocks.map(block => [
    block.querySelector(".opblock-summary-method").innerText,
    block.querySelector(".opblock-summary-path").innerText.replaceAll("\\u200b", ""),
])"""


def resolve_only(host):
    """The flag that makes every host but ``host`` unknown to the browser."""
    return f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"


def test_the_page_shows_every_operation_of_the_document_with_no_network(server, tmp_path):
    document = call(server, "GET", "/openapi.json").json()
    operations = sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    )
    assert CHROMIUM.is_file(), "Debian's chromium is missing: `make test` installs it"
    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",  # a fresh profile
            executable_path=CHROMIUM,
            headless=True,
            args=[*OFFLINE_FLAGS, resolve_only(server.host)],
        )
        try:
            browser.on("request", lambda request: requested.append(request.url))
            page = browser.new_page()
            page.goto(f"{server.base_url}/docs", timeout=RENDER_TIMEOUT_MS)
            page.wait_for_function(
                "count => document.querySelectorAll('.opblock').length >= count",
                arg=len(operations),
                timeout=RENDER_TIMEOUT_MS,
            )
            shown = page.eval_on_selector_all(".opblock", SHOWN_OPERATIONS)
        finally:
            browser.close()
    assert sorted(map(tuple, shown)) == operations
    assert f"{server.base_url}/openapi.json" in requested
    assert [url for url in requested if not url.startswith(f"{server.base_url}/")] == []


def test_the_page_loads_only_files_the_service_serves_itself(testapp):
    page = testapp.get("/docs")
    assert page.content_type == "text/html"
    assert '"/openapi.json"' in page.text  # where Swagger UI reads the document
    tags = page.html.find_all(["script", "link"])
    urls = [tag.get("src") or tag.get("href") for tag in tags if not tag.string]  # not inline
    assert sorted(Path(url).suffix for url in urls) == [".css", ".js", ".png"]
    for url in urls:
        assert url.startswith("/docs/"), url
        asset = testapp.get(url)
        assert asset.content_type == MEDIA_TYPES[Path(url).suffix]
        assert asset.content_length > 0
        assert asset.cache_control.max_age >= 24 * 60 * 60


def test_a_missing_asset_is_a_problem_document(testapp):
    page = testapp.get("/docs")
    script = page.html.find("script", src=True)["src"]
    response = testapp.get(script.replace("swagger-ui-bundle.js", "missing.js"), status=404)
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == 404
