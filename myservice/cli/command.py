"""What every console script shares: one-line errors, and a session that obeys maintenance mode.

- ``console_script(prog)`` decorates a tool's ``main``: an ``OperatorError`` (a setting missing,
  a database that cannot be used, maintenance mode) ends it with one line on stderr, ``prog:
  what is wrong; what to do``, and the error's exit status (2, or 75 for maintenance mode);
  Ctrl-C with status 130. A traceback means a bug.
- ``tool_session(source, during_maintenance=...)`` is ``session_scope`` for a tool that writes:
  its commit is refused (``ServiceReadOnly``, nothing written) while the service is read-only
  for maintenance (``myservice-maintenance INI on``), unless the operator passed
  ``--during-maintenance`` (``add_maintenance_override``).
"""

import argparse
import functools
import sys
from contextlib import contextmanager

from myservice.data.errors import OperatorError
from myservice.data.models.maintenance import refuse_commits_while_read_only
from myservice.data.scripts import session_scope

#: The option that lets a tool write while the service is read-only for maintenance.
OVERRIDE = "--during-maintenance"

#: The help of every tool's first argument.
INI_HELP = "the service's ini file (development.ini, production.ini)"

#: Exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def console_script(prog):
    """Decorate a tool's ``main(argv=None)``: operator errors as one line, not a traceback."""

    def decorate(main):
        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv)
            except OperatorError as error:
                print(f"{prog}: {error}", file=sys.stderr)
                return error.exit_status
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return INTERRUPTED

        return run

    return decorate


def tool_parser(prog, description, epilog=None):
    """The argument parser of tool ``prog``, whose first argument is the service's ini file."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ini", help=INI_HELP)
    return parser


def add_maintenance_override(parser):
    parser.add_argument(
        OVERRIDE,
        action="store_true",
        help="write even while the service is read-only for maintenance (myservice-maintenance"
        " on): for work that is part of the maintenance. Without it the tool refuses, exit 75",
    )


@contextmanager
def tool_session(source, *, during_maintenance):
    """``session_scope(source)`` whose commit is refused while the service is read-only for
    maintenance, unless ``during_maintenance`` (the operator's ``--during-maintenance``)."""
    with session_scope(source) as session:
        if not during_maintenance:
            refuse_commits_while_read_only(session, f"pass {OVERRIDE}")
        yield session
