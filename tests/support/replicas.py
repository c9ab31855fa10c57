"""A PostgreSQL primary and a hot standby of it, built by the tests themselves.

The machine's own PostgreSQL accepts no replication connections, so ``running_pair`` makes a
pair of its own on free ports: ``initdb`` a primary (``wal_level = replica``), ``pg_basebackup
-R`` a streaming standby from it, each started with ``pg_ctl``; as root, every one of those
runs as the ``postgres`` user, in a directory it owns. ``PostgresBinariesMissing`` when the
binaries are not there (the tests skip with that reason). The standby is really stopped and
started (``pg_ctl stop/start``), and its replay really paused (``pg_wal_replay_pause()``), so
that lag is deterministic.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.processes import free_port

#: Where Debian puts the server binaries (they are not on PATH).
BINARIES = Path(os.environ.get("PG_BINARIES", "/usr/lib/postgresql/15/bin"))

#: The database the service uses on the pair.
DATABASE = "myservice"

#: Seconds a server gets to start or stop, and the standby to replay what the primary wrote.
DEADLINE = 30


class PostgresBinariesMissing(Exception):
    """No initdb / pg_ctl / pg_basebackup here: the pair cannot be built."""


def missing_binaries():
    """Why a pair cannot be built here, or None."""
    needed = ("initdb", "pg_ctl", "pg_basebackup")
    absent = [name for name in needed if not (BINARIES / name).is_file()]
    if absent:
        return f"no PostgreSQL server binaries ({', '.join(absent)}) in {BINARIES}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot run PostgreSQL as the postgres user"
    return None


def as_postgres(*command):
    """``command`` as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return [*prefix, *map(str, command)]


def run(*command):
    result = subprocess.run(as_postgres(*command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(str(command[0])).name} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Server:
    directory: Path
    port: int

    def url(self, database=DATABASE):
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database=DATABASE):
        return f"host=127.0.0.1 port={self.port} dbname={database} user=postgres"

    def start(self):
        log = self.directory.parent / f"{self.directory.name}.log"
        run(BINARIES / "pg_ctl", "-D", self.directory, "-l", log, "-w", "-t", DEADLINE, "start")

    def stop(self):
        run(BINARIES / "pg_ctl", "-D", self.directory, "-m", "fast", "-w", "stop")

    def execute(self, statement, database=DATABASE):
        with psycopg.connect(self.conninfo(database), autocommit=True, connect_timeout=2) as c:
            cursor = c.execute(statement)
            return cursor.fetchone() if cursor.description else None


@dataclass
class Pair:
    primary: Server
    standby: Server

    def pause_replay(self):
        self.standby.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self):
        self.standby.execute("SELECT pg_wal_replay_resume()")

    def caught_up(self):
        """Wait (bounded) until the standby has replayed all the primary had written."""
        (target,) = self.primary.execute("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            (behind,) = self.standby.execute(
                f"SELECT pg_wal_lsn_diff('{target}', pg_last_wal_replay_lsn()) > 0"
            )
            if not behind:
                return
            time.sleep(0.05)
        raise AssertionError(f"the standby did not replay up to {target} in {DEADLINE}s")


def owned_directory():
    """A new directory in the system's temp directory (a test's own tmp_path is closed to
    other users), owned by ``postgres`` when we are root."""
    base = Path(tempfile.mkdtemp(prefix="myservice-pair-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    return base


def write_settings(directory, lines):
    with (directory / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n".join(lines) + "\n")


@contextmanager
def running_pair():
    """A primary and its streaming standby, each with the database ``DATABASE``, until the
    block ends; both stopped and their directory removed afterwards."""
    reason = missing_binaries()
    if reason:
        raise PostgresBinariesMissing(reason)
    base = owned_directory()
    try:
        with started_pair(base) as pair:
            yield pair
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def started_pair(base):
    primary = Server(base / "primary", free_port())
    standby = Server(base / "standby", free_port())
    run(BINARIES / "initdb", "-D", primary.directory, "-U", "postgres", "--auth=trust")
    common = [
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{base}'",
        "fsync = off",  # a test pair: speed over durability (commits stay synchronous)
        "max_connections = 60",
        "shared_buffers = 16MB",
    ]
    write_settings(
        primary.directory,
        [*common, f"port = {primary.port}", "wal_level = replica", "max_wal_senders = 4"],
    )
    primary.start()
    try:
        primary.execute(f"CREATE DATABASE {DATABASE}", database="postgres")
        run(
            BINARIES / "pg_basebackup",
            *("-h", "127.0.0.1", "-p", primary.port, "-U", "postgres"),
            *("-D", standby.directory, "-R", "-X", "stream", "-c", "fast"),
        )
        write_settings(standby.directory, [f"port = {standby.port}", "hot_standby = on"])
        standby.start()
        try:
            yield Pair(primary, standby)
        finally:
            stop_quietly(standby)
    finally:
        stop_quietly(primary)


def stop_quietly(server):
    # RuntimeError: stopped already (a test stopped the standby and failed before restarting it)
    with contextlib.suppress(RuntimeError):
        server.stop()
