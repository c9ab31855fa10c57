"""The request class, built once with every reified request method on it.

``config.add_request_method(..., reify=True)`` (ours: ``request_id``, ``dbsession``,
``authentication``; pyramid_tm's ``tm``) makes Pyramid build a new class for every request
(``apply_request_extensions`` -> ``InstancePropertyHelper.apply_properties``: a ``type()`` and
zope.interface bookkeeping per request). Once every include has added its methods, this moves
the same descriptors onto one subclass of the request factory's class, registers that as the
request factory, and leaves Pyramid nothing to apply per request: the same properties, built
once.
"""

from pyramid.interfaces import IRequestExtensions, IRequestFactory
from pyramid.request import Request

#: After every ``add_request_method`` (their actions run at the default order, 0).
AFTER_REQUEST_METHODS = 10


def build_request_class(registry):
    extensions = registry.queryUtility(IRequestExtensions)
    base = registry.queryUtility(IRequestFactory, default=Request)
    if extensions is None or not extensions.descriptors or not isinstance(base, type):
        return
    attrs = {**extensions.descriptors, "__module__": base.__module__}
    registry.registerUtility(type(base.__name__, (base,), attrs), IRequestFactory)
    extensions.descriptors.clear()


def includeme(config):
    config.action(None, build_request_class, (config.registry,), order=AFTER_REQUEST_METHODS)
