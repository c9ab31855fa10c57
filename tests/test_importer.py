"""``myservice-import``: the console script, run as a user runs it, on the session's database.

Its batches really commit, so every row is deleted afterwards (``empty_tables``).
"""

import fcntl
import json
import os
import pty
import selectors
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from sqlalchemy import select

from myservice.data.models import Change, User
from tests.conftest import DEVELOPMENT_INI, short_lived_engine

IMPORT = Path(sys.executable).with_name("myservice-import")

#: Seconds a test waits for the importer to say something or to end.
DEADLINE = 20

CSV = """\
username,email,full_name
ada,ada@example.org,Ada Lovelace
Bob,bob@example.org,
x,not-an-email,
ADA,ada.again@example.org,same username
carl,Ada@Example.org,email taken
dan,dan@example.org,Dan,one value too many
erin,erin@example.org,Erin
"""


def run_import(db_url, *args, stdin=None):
    return subprocess.run(
        [IMPORT, DEVELOPMENT_INI, *args],
        input=stdin,
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def stored(db_url):
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        return connection.execute(select(User.username, User.email).order_by(User.id)).all()


@pytest.fixture
def users_csv(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_every_imported_user_is_in_the_change_feed_as_user_created(db_url, users_csv, empty_tables):
    run_import(db_url, str(users_csv), "--batch", "2")

    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        users = connection.execute(select(User.id, User.username).order_by(User.id)).all()
        changes = connection.execute(select(Change.type, Change.resource, Change.data)).all()
    assert [(type, resource) for type, resource, _ in changes] == [
        ("user.created", f"/users/{user.id}") for user in users
    ]
    assert [data["username"] for _, _, data in changes] == [user.username for user in users]


def test_an_import_stores_the_good_rows_skips_duplicates_and_reports_every_bad_row(
    db_url, users_csv, empty_tables
):
    result = run_import(db_url, str(users_csv), "--batch", "2")

    assert result.returncode == 1, result.stderr
    assert stored(db_url) == [
        ("ada", "ada@example.org"),
        ("bob", "bob@example.org"),
        ("erin", "erin@example.org"),
    ]
    report = result.stdout.splitlines()
    assert "line 4: username: must be 3 to 32 characters" in "\n".join(report)
    assert any(line.startswith("line 4: email: is not a valid email") for line in report)
    assert any(line.startswith("line 6: email: 'Ada@Example.org' is taken") for line in report)
    assert any(line.startswith("line 7: (row): has more values") for line in report)
    assert report[-1].startswith("read 7, created 3, skipped 1, rejected 3, seconds ")
    assert "batch 4 committed" in result.stderr  # plain progress lines: not a terminal


def test_a_rerun_creates_nothing_twice(db_url, users_csv, empty_tables):
    run_import(db_url, str(users_csv))

    again = run_import(db_url, str(users_csv))

    assert again.stdout.splitlines()[-1].startswith("read 7, created 0, skipped 4, rejected 3")
    assert [username for username, _ in stored(db_url)] == ["ada", "bob", "erin"]


def test_json_lines_from_stdin_import_the_same_way(db_url, empty_tables):
    lines = [
        json.dumps({"username": "ada", "email": "ada@example.org"}),
        "",
        "{not json",
        json.dumps({"username": "bob", "email": "bob@example.org", "role": "admin"}),
        json.dumps(["not", "an", "object"]),
    ]

    result = run_import(db_url, "-", stdin="\n".join(lines) + "\n")

    assert result.returncode == 1
    report = result.stdout.splitlines()
    assert report[0].startswith("line 3: (row): is not valid JSON")
    assert report[1] == "line 4: role: is not a field of this resource"
    assert report[2] == "line 5: (row): the body must be a JSON object"
    assert report[-1].startswith("read 4, created 1, skipped 0, rejected 3")
    assert stored(db_url) == [("ada", "ada@example.org")]


def test_a_clean_import_exits_0(db_url, tmp_path, empty_tables):
    path = tmp_path / "users.jsonl"
    path.write_text(json.dumps({"username": "ada", "email": "ada@example.org"}) + "\n")

    result = run_import(db_url, str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("read 1, created 1, skipped 0, rejected 0")


def numbered_users(first, last):
    return "".join(f"user{n:04},user{n}@example.org,User {n}\n" for n in range(first, last))


def start_import_from_stdin(db_url, batch):
    return subprocess.Popen(
        [IMPORT, DEVELOPMENT_INI, "-", "--batch", str(batch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": db_url},
        text=True,
        # Ctrl-C as a terminal sends it, even when the suite itself runs as a background job
        # (which starts its children with SIGINT ignored, and Python then keeps ignoring it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_progress(process, text):
    """Read the importer's progress lines until one contains ``text`` (within the deadline)."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        for _ in range(1000):  # bounded: one progress line per batch
            if not selector.select(timeout=DEADLINE):
                pytest.fail(f"no progress line with {text!r} within {DEADLINE} s")
            line = process.stderr.readline()
            if not line:
                pytest.fail(f"the importer ended before saying {text!r}")
            if text in line:
                return line
    pytest.fail("too many progress lines")


@pytest.mark.parametrize(
    ("stop", "status"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)]
)
def test_a_run_stopped_after_its_first_batch_resumes_with_every_user_once(
    db_url, tmp_path, empty_tables, stop, status
):
    header = "username,email,full_name\n"
    process = start_import_from_stdin(db_url, batch=10)
    try:
        process.stdin.write(header + numbered_users(0, 15))  # a batch and a half; stdin open
        process.stdin.flush()
        wait_for_progress(process, "batch 1 committed")
        process.send_signal(stop)
        output, _ = process.communicate(timeout=DEADLINE)
    finally:
        process.kill()
        process.wait(timeout=DEADLINE)

    assert process.returncode == status
    if stop == signal.SIGINT:  # Ctrl-C: the summary still comes, the open batch is undone
        assert output.splitlines()[-1].endswith("(interrupted)")
    assert [u for u, _ in stored(db_url)] == [f"user{n:04}" for n in range(10)]

    path = tmp_path / "users.csv"
    path.write_text(header + numbered_users(0, 25), encoding="utf-8")
    resumed = run_import(db_url, str(path), "--batch", "10")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[-1].startswith("read 25, created 15, skipped 10")
    assert [u for u, _ in stored(db_url)] == [f"user{n:04}" for n in range(25)]


def test_a_csv_with_a_byte_order_mark_and_a_multi_line_field_imports(
    db_url, tmp_path, empty_tables
):
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeffusername,email,full_name\nzoe,zoe@example.org,"Zoe\nZ."\n'.encode())

    result = run_import(db_url, str(path))

    assert result.returncode == 0, result.stdout
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        assert connection.execute(select(User.username, User.full_name)).all() == [
            ("zoe", "Zoe\nZ.")
        ]


def test_on_a_terminal_progress_is_a_bar_not_lines(db_url, users_csv, empty_tables):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    try:
        result = subprocess.run(
            [IMPORT, DEVELOPMENT_INI, str(users_csv), "--batch", "2"],
            stderr=terminal,
            stdout=subprocess.PIPE,
            env={**os.environ, "DATABASE_URL": db_url},
            text=True,
            timeout=DEADLINE,
        )
        os.close(terminal)
        terminal = None
        drawn = b""
        with selectors.DefaultSelector() as selector:
            selector.register(controller, selectors.EVENT_READ)
            for _ in range(100):  # bounded: read what the bar drew, until nothing is left
                if not selector.select(timeout=1):
                    break
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal's other end is closed: all is read
                    break
                if not chunk:
                    break
                drawn += chunk
    finally:
        if terminal is not None:
            os.close(terminal)
        os.close(controller)

    assert result.returncode == 1
    assert b"7 rows" in drawn
    assert b"committed" not in drawn
    assert result.stdout.splitlines()[-1].startswith("read 7, created 3")
