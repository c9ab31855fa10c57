"""``pshell development.ini``: a Python shell with the app's request, session and models.

The ini files' ``[pshell]`` section names ``setup``, which does what the Pyramid cookiecutter's
does: a transaction is begun on ``tm`` (``request.tm``, pyramid_tm's explicit manager),
``dbsession`` (``request.dbsession``) is joined to it, and ``models`` is ``myservice.data.models``.
``tm.commit()`` stores what was done and ``tm.begin()`` starts the next transaction;
``tm.abort()`` forgets it. Leaving the shell aborts whatever was not committed.
"""

from contextlib import suppress

from transaction.interfaces import NoTransaction

from myservice.data import models
from myservice.data.db import joined_session


def setup(env):
    request = env["request"]
    request.tm.begin()
    # The shell's request is a GET, whose session would run each statement by itself, committed
    # at once (see myservice.data.db.begin); a writing request's would hold SQLite's write lock
    # for as long as the shell is open. The shell's session begins a plain transaction instead.
    request.dbsession = joined_session(request)

    env["tm"] = request.tm
    env["dbsession"] = request.dbsession
    env["models"] = models
    try:
        yield
    finally:
        with suppress(NoTransaction):  # committed, and no new transaction begun
            request.tm.abort()
