"""Errors an operator can fix, as opposed to bugs.

An ``OperatorError`` is raised where the service or a tool finds something wrong with its
setting or surroundings (no database named, a database that cannot be reached, a port that is
taken, maintenance mode): its message says what is wrong and what to do. The entry points print
it as one line and exit with its ``exit_status`` (2 unless it says otherwise), never with a
traceback (``myservice.paste_app``
for pserve, gunicorn and pshell; ``myservice.edge.runner.serve``; the console scripts through
``myservice.cli.command``). Anything else that escapes is a bug, and keeps its traceback.
"""

from pyramid.exceptions import ConfigurationError


class OperatorError(Exception):
    """Something the operator can fix or chose; the message says what, and what to do."""

    exit_status = 2


class BadSettings(OperatorError, ConfigurationError):
    """A setting is missing or wrong, in the ini file or the environment."""
