"""``myservice-import``: the console script, run as a user runs it, on the session's database.

Its batches really commit, so every row is deleted afterwards (``empty_tables``).
"""

import fcntl
import json
import os
import pty
import re
import selectors
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from myservice.data.models import Change, User
from tests.support.database import short_lived_engine
from tests.support.paths import DEVELOPMENT_INI

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
    result = run_import(db_url, str(users_csv), "--batch", "2")

    # 1: rows were rejected, the rest stored (a crash exits 1 too, without the summary)
    assert result.returncode == 1, result.stderr
    assert "read 7, created 3, skipped 1, rejected 3" in result.stdout, result.stderr
    with short_lived_engine(db_url) as engine, engine.connect() as connection:
        users = connection.execute(select(User.id, User.username).order_by(User.id)).all()
        changes = connection.execute(
            select(Change.type, Change.resource, Change.data).order_by(Change.seq)
        ).all()
    assert [username for _, username in users] == ["ada", "bob", "erin"]
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
    # The email as it would have been stored: normalized, the domain lower-cased.
    assert any(line.startswith("line 6: email: 'Ada@example.org' is taken") for line in report)
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


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("ada,ada@example.org,Ada\nbob,bob@example.org,Bob\n", "unknown 'ada'"),  # no header
        ("ada,ada@example.org,Ada\n", "missing 'username', 'email'"),  # one row, no header
        ("username,mail\nada,ada@example.org\n", "unknown 'mail'; missing 'email'"),
        ("username,email,email\nada,a@example.org,b@example.org\n", "twice 'email'"),
        ("", "the file is empty"),
    ],
    ids=["rows-only", "one-row", "misspelt", "twice", "empty"],
)
def test_a_csv_file_without_its_header_is_refused_before_anything_is_read(
    db_url, tmp_path, empty_tables, text, wrong
):
    path = tmp_path / "users.csv"
    path.write_text(text, encoding="utf-8")

    result = run_import(db_url, str(path))

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # not a line per row
    [line] = result.stderr.splitlines()
    assert line.startswith("myservice-import: "), line
    assert wrong in line
    assert "its columns: username, email, full_name; username and email are required" in line
    assert stored(db_url) == []


def test_a_file_that_is_not_utf_8_is_one_line(db_url, tmp_path):
    path = tmp_path / "latin-1.csv"
    path.write_bytes("username,email\nzo\u00e9,zoe@example.org\n".encode("latin-1"))

    result = run_import(db_url, str(path))

    assert result.returncode == 2
    assert result.stderr == (
        f"myservice-import: {path} is not UTF-8 text (invalid continuation byte):"
        " save it as UTF-8\n"
    )


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


def import_on_a_terminal(db_url, *args, stdin=None):
    """Run the importer with its stderr on a terminal; its result, and what it drew there."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    try:
        result = subprocess.run(
            [IMPORT, DEVELOPMENT_INI, *args],
            input=stdin,
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
    return result, drawn.decode()


def test_on_a_terminal_progress_of_a_file_is_a_bar_with_its_size_and_time_left(
    db_url, users_csv, empty_tables
):
    result, drawn = import_on_a_terminal(db_url, str(users_csv), "--batch", "2")

    assert result.returncode == 1
    size = users_csv.stat().st_size
    assert "100%|" in drawn  # of the file's bytes
    assert re.search(rf"\| {size}B/{size}B \[[0-9:]+<[0-9:]+, 7 rows\]", drawn), drawn
    assert "committed" not in drawn
    assert result.stdout.splitlines()[-1].startswith("read 7, created 3")


def test_on_a_terminal_progress_of_a_pipe_counts_rows(db_url, empty_tables):
    result, drawn = import_on_a_terminal(db_url, "-", "--batch", "2", stdin=CSV)

    assert result.returncode == 1
    assert "7 rows" in drawn
    assert "%|" not in drawn  # how much will come is unknown
    assert result.stdout.splitlines()[-1].startswith("read 7, created 3")


#: Interrupted runs in the next test: each stops at another moment of a batch.
INTERRUPTED_RUNS = 8


def test_the_summary_after_ctrl_c_counts_exactly_what_was_stored(db_url, empty_tables):
    """Ctrl-C can land anywhere in a batch; with Python's own handler it could land after the
    batch's commit and before its count, and the summary missed a stored batch. Each run sends
    it at another point of a batch's time (a fraction of the time between two batches)."""
    for run in range(INTERRUPTED_RUNS):
        prefix = f"run{run}x"
        rows = "".join(f"{prefix}{n:04},{prefix}{n}@example.org,\n" for n in range(2000))
        process = start_import_from_stdin(db_url, batch=1)
        try:
            process.stdin.write("username,email,full_name\n" + rows)
            process.stdin.flush()
            wait_for_progress(process, "batch 2 committed")
            started = time.monotonic()
            wait_for_progress(process, "batch 3 committed")
            time.sleep((time.monotonic() - started) * run / INTERRUPTED_RUNS)  # not asserted on
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
            process.wait(timeout=DEADLINE)

        assert process.returncode == 130
        summary = output.splitlines()[-1]
        assert summary.endswith("(interrupted)"), summary
        created = int(summary.split("created ")[1].split(",")[0])
        stored_now = [u for u, _ in stored(db_url) if u.startswith(prefix)]
        assert created == len(stored_now), f"run {run}: {summary}, stored {len(stored_now)}"
