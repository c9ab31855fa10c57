"""The real server for tests: ``pserve`` (or gunicorn) in a subprocess, on a free port.

The server runs ``development.ini`` (or ``production.ini``) unchanged but for its port (and any
``overrides``), on the database the test names (``DATABASE_URL``). Tests speak to it with
``tests.support.client`` (HTTP) or ``tests.support.raw_http`` (bytes on a socket).
"""

import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import DEVELOPMENT_INI, PRODUCTION_INI, ROOT
from tests.support.processes import SetupError as BenchError
from tests.support.processes import free_port, venv_command, write_ini
from tests.support.processes import serving as bench_server

#: bare_app.py beside this file (a WSGI app without Pyramid) served by myservice.edge.server.
BARE_INI = Path(__file__).with_name("bare.ini")

#: Seconds the server gets to answer GET /health after it is started.
STARTUP_DEADLINE = 20


#: A token in the shape the server accepts that no database holds: a server whose database is
#: away must look it up, and so answer 503, not 401.
UNKNOWN_TOKEN = "ms_" + "A" * 43


@dataclass
class Server:
    host: str
    port: int
    log: Path  # the server's stderr: every log line
    token: str  # what ``call`` sends as ``Authorization: Bearer``
    process: subprocess.Popen  # pserve, or gunicorn's master

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def log_lines(self):
        return self.log.read_text(encoding="utf-8").splitlines()


@contextmanager
def running_server(directory, database_url, overrides=None, token=UNKNOWN_TOKEN):
    """``pserve`` of development.ini on a free port of 127.0.0.1, until the block ends.

    As ``make bench`` starts its servers (``tests.support.processes.serving``): only the
    ``listen`` line of the ini differs (and the lines named in ``overrides``), the log goes to
    a file, GET /health must answer within the deadline, and the server is always stopped.
    """
    env = {**os.environ, "DATABASE_URL": database_url}
    with _pserve(DEVELOPMENT_INI, directory, env, overrides, token) as server:
        yield server


@contextmanager
def running_production_server(directory, database_url, overrides=None, token=UNKNOWN_TOKEN):
    """``pserve`` of production.ini, like ``running_server``, with the secret it demands."""
    env = {**os.environ, "DATABASE_URL": database_url, "MYSERVICE_SECRET": "s" * 48}
    with _pserve(PRODUCTION_INI, directory, env, overrides, token) as server:
        yield server


@contextmanager
def running_gunicorn(directory, database_url, workers, token=UNKNOWN_TOKEN):
    """``gunicorn --paste production.ini`` (with gunicorn.conf.py) with ``workers`` processes on
    a free port, like ``running_server``."""
    env = {**os.environ, "DATABASE_URL": database_url, "MYSERVICE_SECRET": "s" * 48}

    def gunicorn(ini, port):
        return [
            *(venv_command("gunicorn"), "--config", str(ROOT / "gunicorn.conf.py")),
            *("--paste", str(ini), "--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
        ]

    with _pserve(PRODUCTION_INI, directory, env, token=token, command=gunicorn) as server:
        yield server


@contextmanager
def running_bare_server(directory, overrides=None):
    """``pserve`` of bare.ini (no Pyramid, no database) on a free port, like the above."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # pserve runs in ``directory``
    with _pserve(BARE_INI, directory, env, overrides) as server:
        yield server


@contextmanager
def _pserve(source, directory, env, overrides=None, token=UNKNOWN_TOKEN, command=None):
    """``source`` served on a free port: by pserve, or by ``command(ini, port)``."""
    port = free_port()
    ini = write_ini(source, directory, port, overrides)
    command = command and command(ini, port)
    try:
        with bench_server(ini, env, port, STARTUP_DEADLINE, command) as started:
            yield Server("127.0.0.1", port, started.log_path, token, started.process)
    except BenchError as error:
        pytest.fail(str(error))
