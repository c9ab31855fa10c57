"""Tools that measure the service from outside; they are not part of the ``myservice`` package."""
