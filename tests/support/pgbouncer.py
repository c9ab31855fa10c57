"""PgBouncer for tests: started by the test itself, in transaction pooling mode, on a free port.

Debian's ``pgbouncer`` package (the Makefile's testing install step installs it). Its ini file
and userlist are written to a directory of the test's; it logs to a file there and is always
stopped. PgBouncer refuses to run as root, so as root (CI) it drops to ``nobody`` once it has
read its files.
"""

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.processes import SetupError as BenchError
from tests.support.processes import free_port, running_process

#: Seconds PgBouncer gets to accept connections after it is started.
STARTUP_DEADLINE = 10

#: The Debian package's binary; /usr/sbin is not on every user's PATH.
BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass
class Bouncer:
    url: str  # the database through PgBouncer, as a SQLAlchemy URL
    admin: str  # libpq conninfo of PgBouncer's admin console (SHOW STATS, SHOW SERVERS...)
    log: Path

    def answers(self):
        try:
            self.show("VERSION")
        except psycopg.OperationalError:
            return False
        return True

    def show(self, what):
        """Rows of the admin console's ``SHOW what``, as dicts."""
        with psycopg.connect(self.admin, autocommit=True) as connection:
            cursor = connection.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@contextmanager
def running_pgbouncer(directory, database_url, *, pool_size, server_time_zone=None):
    """PgBouncer in front of ``database_url``'s database until the block ends.

    ``pool_size`` server connections at most (``default_pool_size``): fewer than the service's
    own pool, so that PgBouncer lends one server connection to several of its connections.
    ``server_time_zone``: the TimeZone PgBouncer sets on its server connections, to stand for a
    PostgreSQL whose default zone is not UTC.
    """
    if not Path(BINARY).is_file():
        pytest.fail(f"no {BINARY}: `make .venv/.installed-testing` installs Debian's pgbouncer")
    upstream = make_url(database_url)
    port = free_port()
    target = {
        "host": upstream.host or "127.0.0.1",
        "port": upstream.port or 5432,
        "dbname": upstream.database,
        "user": upstream.username,
        "password": upstream.password,
        "timezone": server_time_zone,
    }
    connect_string = " ".join(f"{key}={value}" for key, value in target.items() if value)
    user = upstream.username or "postgres"
    (directory / "userlist.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
{upstream.database} = {connect_string}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "userlist.txt"}
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool_size}
""",
        encoding="utf-8",
    )
    as_nobody = ["-u", "nobody"] if os.geteuid() == 0 else []
    bouncer = Bouncer(
        url=upstream.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
        admin=f"host=127.0.0.1 port={port} dbname=pgbouncer user={user}",
        log=directory / "pgbouncer.log",
    )
    command = [BINARY, *as_nobody, str(ini)]
    waiting_for = "pgbouncer to accept connections"
    try:
        with running_process(
            command, bouncer.log, bouncer.answers, STARTUP_DEADLINE, waiting_for=waiting_for
        ):
            yield bouncer
    except BenchError as error:
        pytest.fail(str(error))
