"""Reading the rows of ``myservice-import``'s input: CSV with its header checked, or JSON lines.

``rows`` yields (line number, parsed row or None, problem or None) for each row; a file that
cannot be imported at all (no header, unknown columns) is refused first (``BadInput``).
"""

import csv
import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

import pydantic_core

from myservice.api.schemas import UserCreate
from myservice.data.errors import OperatorError

#: The columns of a CSV file: the fields of ``UserCreate``; those without a default required.
COLUMNS = tuple(UserCreate.model_fields)
REQUIRED = tuple(name for name, spec in UserCreate.model_fields.items() if spec.is_required())


class BadInput(OperatorError):
    """The input cannot be imported at all: missing, unreadable, not UTF-8, or a CSV file
    without its header row."""


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
