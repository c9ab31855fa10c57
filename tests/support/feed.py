"""Reading the change feed (GET /changes) through either client: WebTest's ``TestApp`` or a
real ``Server``."""

from tests.support.client import fetched

#: Pages a reading of the whole feed may take: a test database never holds more.
MAX_PAGES = 100


def feed(client, after, limit=1000):
    """The changes after ``after``: one page of ``limit`` at the most."""
    return fetched(client, f"/changes?after={after}&limit={limit}")["items"]


def feed_head(client):
    """The seq of the feed's last change so far (tests that really commit may have left some)."""
    after = 0
    for _ in range(MAX_PAGES):
        page = fetched(client, f"/changes?after={after}&limit=1000")
        if not page["items"]:
            return after
        after = page["next_after"]
    raise AssertionError(f"more than {MAX_PAGES} pages of changes in the test database")
