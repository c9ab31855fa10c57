"""``myservice-import INI FILE [--batch N]``: load users from CSV or JSON lines.

Rows go through the code path of ``POST /users/bulk``: the ``UserCreate`` schema, then
``clashes`` and ``insert_users`` (one multi-row INSERT), one transaction per batch. A row
whose username exists already (stored, or earlier in the file) is skipped, so a re-run after a
crash or Ctrl-C stores only what is missing; a row that is invalid, or whose email another
user holds, is rejected and reported, and the good rows are stored all the same.

A CSV file's header is checked before anything is read: it names the columns, of
``rows.COLUMNS``, those of ``rows.REQUIRED`` among them. Ctrl-C lets the batch being stored finish
(``DeferredInterrupt``), so the summary counts exactly what was stored; a second one stops at
once. While the service is read-only for maintenance nothing is stored (``tool_session``)
unless the operator passes ``--during-maintenance``. Exit statuses: ``EPILOG`` (``--help``).

This module is the command: its arguments, the run and its summary. ``rows`` reads the input
and checks a CSV file's header, ``batches`` checks and stores the rows batch by batch, and
``progress`` draws the progress and defers Ctrl-C; ``python -m myservice.cli.importer`` runs
the command too (``__main__``).
"""

import sys

from myservice.cli.command import (
    INTERRUPTED,
    add_maintenance_override,
    console_script,
    tool_parser,
)
from myservice.cli.importer.batches import Importer
from myservice.cli.importer.progress import Bar, DeferredInterrupt, plain_progress
from myservice.cli.importer.rows import COLUMNS, BadInput, input_size, opened, rows
from myservice.data.scripts import opened_engine

DESCRIPTION = "Load users from a CSV file (with a header row) or a JSON lines file."
EPILOG = """\
The database is the ini file's sqlalchemy.url; DATABASE_URL overrides it. Rows are checked as
POST /users checks them and stored in batches, one transaction each; a row whose username is
taken is skipped, so a run can be repeated. While the service is read-only for maintenance
(myservice-maintenance INI on) nothing is stored (exit status 75) unless --during-maintenance.
Ctrl-C lets the batch being stored finish; the summary counts what was stored.
Exit status: 0; 1 when a row was rejected; 2 for bad arguments, a file that cannot be read or
imported (no header) or a database that cannot be used; 75 as above; 130 after Ctrl-C."""


def parser():
    parser = tool_parser("myservice-import", DESCRIPTION, EPILOG)
    parser.add_argument(
        "file",
        help=f"a .csv file whose first line names its columns ({', '.join(COLUMNS)}), "
        "a .jsonl file, or - (stdin)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="rows per transaction (1000)")
    add_maintenance_override(parser)
    return parser


@console_script("myservice-import")
def main(argv=None):
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.batch < 1:
        arguments.error("--batch must be at least 1")
    try:
        with opened(args.file) as lines:
            return run(args, lines)
    except OSError as error:  # missing, unreadable
        raise BadInput(str(error)) from None
    except UnicodeDecodeError as error:
        reason = f"{args.file} is not UTF-8 text ({error.reason})"
        raise BadInput(f"{reason}: save it as UTF-8") from None


def run(args, lines):
    """Import ``lines``; print the summary, however the run ends; return the exit status."""
    source = rows(args.file, lines)  # the header first
    progress = Bar(lines, input_size(lines)) if sys.stderr.isatty() else plain_progress
    status, ending = None, ""
    with opened_engine(args.ini) as engine, DeferredInterrupt().installed() as interrupt:
        importer = Importer(
            engine, args.batch, sys.stdout, progress, interrupt, args.during_maintenance
        )
        try:
            importer.run(source)
        except KeyboardInterrupt:
            status, ending = INTERRUPTED, " (interrupted)"
        except BaseException:
            ending = " (stopped)"  # by the error the caller reports
            raise
        else:
            status = 1 if importer.totals.rejected else 0
        finally:
            if isinstance(progress, Bar):
                progress.close()
            print(importer.totals.summary() + ending, flush=True)
    return status
