"""Maintenance mode: the service refuses every write (503) and keeps serving reads.

Two switches, either one is enough:

- ``myservice.read_only = true`` in the ini file, read at startup (a replica, say);
- the database's ``service_mode`` row, turned on and off at run time, without a restart, by
  ``myservice-maintenance INI on|off|status``. Each process reads it again at most every
  ``myservice.maintenance_check_seconds`` (2), on the first write after that: the switch takes
  effect on every process of every host within that time, and costs reads nothing and writes
  one indexed statement per process every 2 seconds.

The check wraps every view that accepts POST, PUT, PATCH or DELETE, after its permission check
and before its decorators (so an ``Idempotency-Key`` is not even claimed). A refused write is a
503 problem with ``Retry-After``, raised before the view: its transaction is rolled back and
leaves nothing. ``GET /health/ready`` reads the row afresh and reports the mode.
"""

import time

from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.settings import asbool

from myservice.data.db import WRITE_METHODS
from myservice.data.models.maintenance import read_mode

#: Seconds a client is told to wait before retrying a refused write.
RETRY_AFTER = "30"

DEFAULT_CHECK_SECONDS = 2.0


class ReadOnly:
    """Whether this process refuses writes: the setting, else the row as last read."""

    def __init__(self, forced, check_seconds):
        self.forced = forced
        self.check_seconds = check_seconds
        self.known = (False, float("-inf"))  # (the row's read_only, monotonic time to re-read)

    @classmethod
    def from_settings(cls, settings):
        return cls(
            forced=asbool(settings.get("myservice.read_only", False)),
            check_seconds=float(
                settings.get("myservice.maintenance_check_seconds", DEFAULT_CHECK_SECONDS)
            ),
        )

    def refuses_writes(self, request):
        if self.forced:
            return True
        read_only, until = self.known
        if time.monotonic() < until:
            return read_only
        return self.learn(read_mode(request.dbsession)[0])

    def learn(self, read_only):
        """Remember the row's value for ``check_seconds``; return whether writes are refused."""
        self.known = (read_only, time.monotonic() + self.check_seconds)
        return self.forced or read_only


def refuse_writes_when_read_only(view, info):
    """A view deriver: the check, around each view that may accept a write method."""
    methods = info.options.get("request_method")
    methods = (methods,) if isinstance(methods, str) else methods
    if info.exception_only or (methods is not None and WRITE_METHODS.isdisjoint(methods)):
        return view

    def guarded(context, request):
        if request.method in WRITE_METHODS and request.registry["read_only"].refuses_writes(
            request
        ):
            raise HTTPServiceUnavailable(
                "the service is read-only for maintenance: writes are refused, reads work",
                headers={"Retry-After": RETRY_AFTER},
            )
        return view(context, request)

    return guarded


def mode_name(read_only):
    return "read-only" if read_only else "read-write"


def includeme(config):
    config.registry["read_only"] = ReadOnly.from_settings(config.get_settings())
    # After the permission check (secured_view), before decorators (Idempotency-Key).
    config.add_view_deriver(
        refuse_writes_when_read_only, under="http_cached_view", over="decorated_view"
    )
