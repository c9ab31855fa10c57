"""Storing ``myservice-import``'s rows: each row checked by ``UserCreate``, each batch stored in
one transaction with ``clashes`` and ``insert_users`` (as ``POST /users/bulk``), and counted.
"""

import itertools
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, IntegrityError
from tqdm import tqdm

from myservice.api.changes import change
from myservice.api.schemas import UserCreate, UserOut
from myservice.cli.command import tool_session
from myservice.data.db import is_conflict
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
