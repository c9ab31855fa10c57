"""``pshell development.ini``: a Python shell with the app's request, session and models.

The ini files' ``[pshell]`` section names ``setup``, which does what the Pyramid cookiecutter's
does: a transaction is begun on ``tm`` (``request.tm``, pyramid_tm's explicit manager),
``dbsession`` (``request.dbsession``) is joined to it, and ``models`` is ``myservice.data.models``.
``tm.commit()`` stores what was done and ``tm.begin()`` starts the next transaction;
``tm.abort()`` forgets it. Leaving the shell aborts whatever was not committed.

While the service is read-only for maintenance ``tm.commit()`` is refused (``ServiceReadOnly``,
nothing written), as every tool's commit is; ``dbsession.info["during_maintenance"] = True``
lets a shell whose work is part of the maintenance commit anyway.
"""

from contextlib import suppress

from transaction.interfaces import NoTransaction

from myservice.data import models
from myservice.data.db import joined_session
from myservice.data.models.maintenance import DURING_MAINTENANCE, refuse_commits_while_read_only

#: What the refusal tells the operator to do, when the write is part of the maintenance.
OVERRIDE = f"tm.abort(), then dbsession.info[{DURING_MAINTENANCE!r}] = True, and do it again"


def setup(env):
    request = env["request"]
    request.tm.begin()
    # The shell's request is a GET, whose session would run each statement by itself, committed
    # at once (see myservice.data.engine.begin); a writing request's would hold SQLite's write lock
    # for as long as the shell is open. The shell's session begins a plain transaction instead.
    request.dbsession = joined_session(request)
    refuse_commits_while_read_only(request.dbsession, OVERRIDE)

    env["tm"] = request.tm
    env["dbsession"] = request.dbsession
    env["models"] = models
    try:
        yield
    finally:
        with suppress(NoTransaction):  # committed, and no new transaction begun
            request.tm.abort()
