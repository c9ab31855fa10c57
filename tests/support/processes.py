"""Child processes for tests and for ``make bench``: a command started with its output in a
file, ready within a deadline (or a ``SetupError`` that says why, with the log's tail), and
always stopped; ``pserve`` of an ini file on a free port of 127.0.0.1, ready when GET /health
answers; the ini file a copy of one of the project's with its ``listen`` line (and any other
line named) replaced.

Tests use it through ``tests.support.servers`` and ``tests.support.pgbouncer``; bench/ imports
it directly (the benchmark may use test support, never the other way round).
"""

import http.client
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class SetupError(Exception):
    """Something a run needs could not be set up; the message says why (``make bench`` prints
    it, a test fails with it)."""


@dataclass
class ServedProcess:
    """A process serving HTTP on ``port`` of 127.0.0.1, its output in ``log_path``."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self):
        return self.process.pid


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_ini(source, directory, port, overrides=None, *, name="served.ini", edit=None):
    """A copy of ``source`` in ``directory`` that listens on ``port``.

    ``overrides`` maps setting names to values for lines the source already has (one each).
    ``%(here)s`` is pinned to the source's directory, so alembic still finds its scripts.
    ``edit``, when given, changes the text first (e.g. to serve another app).
    """
    if not source.is_file():
        raise SetupError(f"no {source}: run from a checkout, or name the ini file with --ini")
    text = source.read_text(encoding="utf-8")
    text = edit(text) if edit else text
    for setting, value in {"listen": f"127.0.0.1:{port}", **(overrides or {})}.items():
        text, replaced = re.subn(rf"(?m)^{re.escape(setting)}\s*=.*$", f"{setting} = {value}", text)
        if replaced != 1:
            raise SetupError(f"{source} has no single '{setting} = ...' line to replace")
    text = text.replace("%(here)s", str(source.resolve().parent).replace("%", "%%"))
    ini = directory / name
    ini.write_text(text, encoding="utf-8")
    return ini


def venv_command(name):
    """``name`` from the virtualenv running this script, else from PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SetupError(f"cannot find the {name} command")
    return found


@contextmanager
def serving(ini, env, port, startup_seconds, command=None):
    """``pserve ini`` (or ``command``) answering GET /health, terminated when the block ends,
    however it ends."""
    log_path = ini.with_suffix(".log")
    command = command or [venv_command("pserve"), str(ini)]
    with running_process(
        command,
        log_path,
        lambda: health_answers(port),
        startup_seconds,
        waiting_for="GET /health to answer 200",
        env=env,
        cwd=ini.parent,
    ) as process:
        yield ServedProcess(process, port, log_path)


@contextmanager
def running_process(command, log_path, ready, seconds, *, waiting_for, **popen):
    """``command`` (``popen``: Popen's arguments) with its output in ``log_path``, once
    ``ready()`` is true (within ``seconds``, else SetupError naming what it was ``waiting_for``);
    terminated when the block ends, however it ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **popen
        )
    try:
        wait_until_ready(process, log_path, ready, seconds, waiting_for)
        yield process
    finally:
        stop(process)


def wait_until_ready(process, log_path, ready, seconds, waiting_for):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            name = Path(process.args[0]).name
            raise SetupError(
                f"{name} exited with status {process.returncode}:\n{log_tail(log_path)}"
            )
        if ready():
            return
        time.sleep(0.1)
    raise SetupError(f"waited {seconds:g}s for {waiting_for}, in vain:\n{log_tail(log_path)}")


def health_answers(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(path, lines=20):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
