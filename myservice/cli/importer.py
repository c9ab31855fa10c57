"""``myservice-import INI FILE [--batch N]``: load users from CSV or JSON lines.

Rows go through the code path of ``POST /users/bulk``: the ``UserCreate`` schema, then
``clashes`` and ``insert_users`` (one multi-row INSERT), one transaction per batch. A row
whose username exists already (stored, or earlier in the file) is skipped, so a re-run after a
crash or Ctrl-C stores only what is missing; a row that is invalid, or whose email another
user holds, is rejected and reported, and the good rows are stored all the same.

A CSV file's header is checked before anything is read: it names the columns, of
``COLUMNS``, those of ``REQUIRED`` among them. Ctrl-C lets the batch being stored finish
(``DeferredInterrupt``), so the summary counts exactly what was stored; a second one stops at
once. While the service is read-only for maintenance nothing is stored (``tool_session``)
unless the operator passes ``--during-maintenance``. Exit statuses: ``EPILOG`` (``--help``).
"""

import argparse
import csv
import itertools
import os
import signal
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydantic_core
from sqlalchemy.exc import DBAPIError, IntegrityError
from tqdm import tqdm

from myservice.api.changes import change
from myservice.api.schemas import UserCreate, UserOut
from myservice.cli.command import (
    INTERRUPTED,
    add_maintenance_override,
    console_script,
    tool_session,
)
from myservice.data.db import is_conflict
from myservice.data.errors import OperatorError
from myservice.data.models import clashes, insert_users
from myservice.data.models.change import append_changes
from myservice.data.scripts import opened_engine
from myservice.edge.problems import InvalidBody
from myservice.edge.validation import validate

DESCRIPTION = "Load users from a CSV file (with a header row) or a JSON lines file."
EPILOG = """\
The database is the ini file's sqlalchemy.url; DATABASE_URL overrides it. Rows are checked as
POST /users checks them and stored in batches, one transaction each; a row whose username is
taken is skipped, so a run can be repeated. While the service is read-only for maintenance
(myservice-maintenance INI on) nothing is stored (exit status 75) unless --during-maintenance.
Ctrl-C lets the batch being stored finish; the summary counts what was stored.
Exit status: 0; 1 when a row was rejected; 2 for bad arguments, a file that cannot be read or
imported (no header) or a database that cannot be used; 75 as above; 130 after Ctrl-C."""

#: The columns of a CSV file: the fields of ``UserCreate``; those without a default required.
COLUMNS = tuple(UserCreate.model_fields)
REQUIRED = tuple(name for name, spec in UserCreate.model_fields.items() if spec.is_required())


class BadInput(OperatorError):
    """The input cannot be imported at all: missing, unreadable, not UTF-8, or a CSV file
    without its header row."""


#: Times a batch is tried when a concurrent writer takes one of its usernames or emails, or
#: conflicts with it.
ATTEMPTS = 3


@dataclass
class Totals:
    read: int = 0
    created: int = 0
    skipped: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self):
        seconds = time.monotonic() - self.started
        return (
            f"read {self.read}, created {self.created}, skipped {self.skipped}, "
            f"rejected {self.rejected}, seconds {seconds:.2f}"
        )


# -- reading rows ----------------------------------------------------------------------------


def input_size(lines):
    """The input's size in bytes when it is a regular file (a path, or stdin redirected from
    one), else None (a pipe: how much will come is unknown)."""
    info = os.fstat(lines.fileno())
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@contextmanager
def opened(name):
    """The lines of the file ``name``, or of stdin for ``-`` (UTF-8, a BOM allowed, newlines
    as they are, which the csv module needs for quoted fields that span lines)."""
    if name == "-":
        sys.stdin.reconfigure(encoding="utf-8-sig", newline="")
        yield sys.stdin
    else:
        with open(name, encoding="utf-8-sig", newline="") as lines:
            yield lines


def rows(name, lines):
    """(line number, parsed row or None, problem or None) for each row of the input; a CSV
    file's header is checked at once (``BadInput``), before any row is read."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        first = next(lines, "")  # stdin (or no suffix): JSON lines start with an object
        lines = _chain(first, lines)
        suffix = ".jsonl" if first.lstrip().startswith("{") else ".csv"
    if suffix == ".jsonl":
        return jsonl_rows(lines)
    reader = csv.DictReader(lines)
    check_header(reader.fieldnames)
    return csv_rows(reader)


def _chain(first, lines):
    yield first
    yield from lines


def check_header(names):
    """Refuse a CSV file whose first line is not a header of known columns (``BadInput``):
    without one, its first row would be taken for the header and every row rejected."""
    expected = f"its columns: {', '.join(COLUMNS)}; {' and '.join(REQUIRED)} are required"
    if names is None:
        raise BadInput(f"the file is empty: a CSV file starts with a header row ({expected})")
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in names]
    twice = sorted({name for name in names if names.count(name) > 1})
    wrong = [
        f"{what} {', '.join(repr(name) for name in found)}"
        for what, found in (("unknown", unknown), ("missing", missing), ("twice", twice))
        if found
    ]
    if wrong:
        raise BadInput(f"line 1 is not a header row ({expected}): {'; '.join(wrong)}")


def csv_rows(reader):
    for record in reader:
        if None in record:  # more values than the header has names
            yield reader.line_num, None, ("", "has more values than the header has columns")
            continue
        yield reader.line_num, {k: v for k, v in record.items() if v is not None}, None


def jsonl_rows(lines):
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, pydantic_core.from_json(line, allow_inf_nan=False), None
        except ValueError as error:
            yield number, None, ("", f"is not valid JSON: {error}")


# -- storing batches -------------------------------------------------------------------------


def store(engine, users, during_maintenance):
    """Store the ``users`` that clash with nobody, in one transaction; return the clashes
    (index: field), as ``clashes`` finds them."""
    if not users:
        return {}
    for attempt in itertools.count(1):
        try:
            with tool_session(engine, during_maintenance=during_maintenance) as session:
                found = clashes(session, users)
                created = insert_users(session, [u for n, u in enumerate(users) if n not in found])
                if created:  # in the feed like any other create (docs/design.md)
                    append_changes(session, [user_created(user) for user in created])
            return found
        except DBAPIError as error:
            # A concurrent writer took a name between our check and insert, or a transient
            # conflict that pyramid_retry would replay for a request: run the batch again.
            retry = isinstance(error, IntegrityError) or is_conflict(error)
            if not retry or attempt == ATTEMPTS:
                raise


def user_created(user):
    return change("user.created", f"/users/{user.id}", UserOut.model_validate(user))


class DeferredInterrupt:
    """Ctrl-C (SIGINT) that waits for the end of a ``held`` block, where a batch is stored and
    counted: the batch is then stored and counted, or neither, and the summary is exact. (With
    Python's own handler the interrupt could land after the commit and before the count.) A
    second Ctrl-C during the block stops at once."""

    def __init__(self):
        self.holding = False
        self.pending = False

    def __call__(self, signum, frame):
        if not self.holding or self.pending:
            raise KeyboardInterrupt
        self.pending = True

    @contextmanager
    def installed(self):
        """SIGINT handled by this for the block; left ignored when it was (``nohup``, or a
        background job of a shell without job control)."""
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise KeyboardInterrupt


class Importer:
    def __init__(self, engine, batch_size, out, progress, interrupt, during_maintenance):
        self.engine = engine
        self.batch_size = batch_size
        self.out = out
        self.progress = progress
        self.interrupt = interrupt
        self.during_maintenance = during_maintenance
        self.totals = Totals()
        self.batches = 0

    def run(self, source):
        batch = []  # (line, user) of the valid rows
        read = rejected = 0
        for line, data, problem in source:
            read += 1
            user = self.check(line, data, problem)
            if user is None:
                rejected += 1
            else:
                batch.append((line, user))
            if read == self.batch_size:
                self.commit(batch, read, rejected)
                batch, read, rejected = [], 0, 0
        if read:
            self.commit(batch, read, rejected)

    def check(self, line, data, problem):
        """The row as validated by ``UserCreate``, or None after reporting why not."""
        if problem is None:
            try:
                return validate(data, UserCreate).model_dump()
            except InvalidBody as error:
                problems = [(e["pointer"].lstrip("/"), e["detail"]) for e in error.errors]
        else:
            problems = [problem]
        for name, reason in problems:
            self.report(f"line {line}: {name or '(row)'}: {reason}")
        return None

    def commit(self, batch, read, rejected):
        """Store the batch, count and report it: all of it, or (on Ctrl-C) none of it."""
        with self.interrupt.held():
            found = store(self.engine, [user for _, user in batch], self.during_maintenance)
            skipped = sum(1 for name in found.values() if name == "username")
            self.batches += 1
            self.totals.read += read
            self.totals.created += len(batch) - len(found)
            self.totals.skipped += skipped
            self.totals.rejected += rejected + len(found) - skipped
            for index, name in found.items():
                line, user = batch[index]
                if name != "username":
                    self.report(f"line {line}: {name}: '{user[name]}' is taken by another user")
            self.progress(self, read)

    def report(self, text):
        tqdm.write(text, file=self.out)


def plain_progress(importer, rows):
    totals = importer.totals
    print(f"batch {importer.batches} committed: {totals.summary()}", file=sys.stderr, flush=True)


class Bar:
    """The progress bar on a terminal. When the input's size is known it counts the bytes read
    of it, so it shows a percentage and the time left, the rows beside them; else the rows."""

    def __init__(self, lines, size):
        self.binary = lines.buffer  # its position: how far the CSV or JSON reader has read
        self.sized = size is not None
        if self.sized:
            self.bar = tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                bar_format="{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]",
            )
            self.bar.set_postfix_str("0 rows", refresh=False)
        else:
            self.bar = tqdm(unit=" rows", file=sys.stderr)

    def __call__(self, importer, rows):
        if self.sized:
            self.bar.set_postfix_str(f"{importer.totals.read} rows", refresh=False)
            self.bar.update(self.binary.tell() - self.bar.n)
        else:
            self.bar.update(rows)

    def close(self):
        self.bar.close()


def parser():
    parser = argparse.ArgumentParser(
        prog="myservice-import",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ini", help="the service's ini file (development.ini, production.ini)")
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


if __name__ == "__main__":
    sys.exit(main())
