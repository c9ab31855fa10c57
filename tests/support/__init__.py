"""What the tests share: every helper lives here once, and no test module imports another.
Fixtures live in the root conftest.py, which builds them from these.

- ``paths``: where the project's files are.
- ``database``: the test database from outside the app (migrate, engines of the tests' own,
  rows deleted, tokens stored, the membership invariants read back).
- ``app``: the service in process (a client with a token, extra views, a test rolled back,
  its log, the operations it serves); ``views``: the extra views conftest's ``views_app`` adds.
- ``contract``: what docs/api.md says that several resources' tests check.
- ``factories``: names nobody has taken, users and groups made through either client;
  ``feed``: the change feed read through either client.
- ``problems``: problem documents, from WebTest or from a real server; ``hostile``: what a
  refused request must leave behind.
- ``processes``: child processes (also make bench's); ``servers``: the real service in one;
  ``client``: HTTP to it; ``raw_http``: bytes on a socket to it.
- ``locks``: waiting until a request waits for a lock the test holds.
- ``outage``, ``tcpproxy``, ``pgbouncer``: a database out of reach, slow, or behind PgBouncer.
- ``bare_app`` and ``bare.ini``: a WSGI app without Pyramid, to test the server alone.
"""
