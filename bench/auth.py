"""What authentication costs: GET one user served with and without it (``bench/compare.py``).

``noauth_app`` is myservice configured as ``myservice.main`` does it, plus one directive: the
including Configurator sets a security policy that permits everything after
``config.include(myservice.includeme)``. Pyramid resolves the two ``set_security_policy``
actions by their include path, and the including configurator's own action wins over the one
in the included ``myservice.edge.security``, so no header is parsed and no token looked up; nothing
in myservice knows about the comparison (bench/test_auth.py proves the app answers
without a token). The views keep their permissions and Pyramid still asks the policy, so what
is left out is the token's price: the header, its hash, the lookup, the use noted.
"""

from pyramid.config import Configurator
from pyramid.security import Allowed

import myservice
from bench.compare import Comparison
from bench.variants import app_editor

#: The comparison app's factory, for ``[app:main]``'s ``use`` line.
USE = "call:bench.auth:noauth_app"

#: GET one user with and without authentication; the issue's target: under 5%.
COMPARISON = Comparison("myservice-noauth", app_editor(USE), "get", "authentication", max_cost=0.05)


class AllowEverything:
    """A security policy with no identities that permits every view: a comparison only."""

    def identity(self, request):
        return None

    def authenticated_userid(self, request):
        return None

    def permits(self, request, context, permission):
        return Allowed("the benchmark's comparison app permits everything")

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []


def noauth_app(global_config, **settings):
    """myservice without authentication (``use = call:bench.auth:noauth_app``)."""
    with Configurator(settings=settings) as config:
        config.include(myservice.includeme)
        config.set_security_policy(AllowEverything())
    return config.make_wsgi_app()
