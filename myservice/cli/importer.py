"""``myservice-import INI FILE [--batch N]``: load users from CSV or JSON lines.

Rows go through the code path of ``POST /users/bulk``: the ``UserCreate`` schema, then
``clashes`` and ``insert_users`` (one multi-row INSERT), one transaction per batch. A row
whose username exists already (stored, or earlier in the file) is skipped, so a re-run after a
crash or Ctrl-C stores only what is missing; a row that is invalid, or whose email another
user holds, is rejected and reported, and the good rows are stored all the same.

While the service is read-only for maintenance nothing is stored (``tool_session``) unless the
operator passes ``--during-maintenance``.

Exit status: 0, or 1 when any row was rejected, 2 for bad arguments or a database that cannot
be used, 75 while the service is read-only for maintenance, 130 after Ctrl-C.
"""

import argparse
import csv
import itertools
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
from myservice.cli.command import add_maintenance_override, console_script, tool_session
from myservice.data.db import is_conflict, opened_engine
from myservice.data.models import clashes, insert_users
from myservice.data.models.change import append_changes
from myservice.edge.problems import InvalidBody
from myservice.edge.validation import validate

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
    """(line number, parsed row or None, problem or None) for each row of the input."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        first = next(lines, "")  # stdin (or no suffix): JSON lines start with an object
        lines = _chain(first, lines)
        suffix = ".jsonl" if first.lstrip().startswith("{") else ".csv"
    yield from (csv_rows(lines) if suffix == ".csv" else jsonl_rows(lines))


def _chain(first, lines):
    yield first
    yield from lines


def csv_rows(lines):
    reader = csv.DictReader(lines)
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


class Importer:
    def __init__(self, engine, batch_size, out, progress, during_maintenance):
        self.engine = engine
        self.batch_size = batch_size
        self.out = out
        self.progress = progress
        self.during_maintenance = during_maintenance
        self.totals = Totals()
        self.batches = 0

    def run(self, source):
        batch = []  # (line, user) of the valid rows
        read = 0
        for line, data, problem in source:
            read += 1
            user = self.check(line, data, problem)
            if user is not None:
                batch.append((line, user))
            if read == self.batch_size:
                self.commit(batch, read)
                batch, read = [], 0
        if read:
            self.commit(batch, read)

    def check(self, line, data, problem):
        """The row as validated by ``UserCreate``, or None after reporting why not."""
        if problem is None:
            try:
                return validate(data, UserCreate).model_dump()
            except InvalidBody as error:
                problems = [(e["pointer"].lstrip("/"), e["detail"]) for e in error.errors]
        else:
            problems = [problem]
        self.totals.rejected += 1
        for name, reason in problems:
            self.report(f"line {line}: {name or '(row)'}: {reason}")
        return None

    def commit(self, batch, read):
        found = store(self.engine, [user for _, user in batch], self.during_maintenance)
        skipped = 0
        for index, name in found.items():
            line, user = batch[index]
            if name == "username":
                skipped += 1
            else:
                self.totals.rejected += 1
                self.report(f"line {line}: {name}: '{user[name]}' is taken by another user")
        self.batches += 1
        self.totals.read += read
        self.totals.created += len(batch) - len(found)
        self.totals.skipped += skipped
        self.progress(self, read)

    def report(self, text):
        tqdm.write(text, file=self.out)


def plain_progress(importer, rows):
    totals = importer.totals
    print(f"batch {importer.batches} committed: {totals.summary()}", file=sys.stderr, flush=True)


@console_script("myservice-import")
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="myservice-import", description="Load users from a CSV or JSON lines file."
    )
    parser.add_argument("ini", help="the service's ini file (DATABASE_URL overrides its database)")
    parser.add_argument("file", help="a .csv file with a header row, a .jsonl file, or - (stdin)")
    parser.add_argument("--batch", type=int, default=1000, help="rows per transaction (1000)")
    add_maintenance_override(parser)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    bar = tqdm(unit=" rows", file=sys.stderr) if sys.stderr.isatty() else None
    try:
        with opened_engine(args.ini) as engine, opened(args.file) as lines:
            importer = Importer(
                engine,
                args.batch,
                sys.stdout,
                (lambda importer, read: bar.update(read)) if bar is not None else plain_progress,
                args.during_maintenance,
            )
            try:
                importer.run(rows(args.file, lines))
            except KeyboardInterrupt:
                status = 130
            else:
                status = 1 if importer.totals.rejected else 0
    except OSError as error:
        parser.exit(2, f"myservice-import: {error}\n")
    finally:
        if bar is not None:
            bar.close()
    print(importer.totals.summary() + (" (interrupted)" if status == 130 else ""), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
