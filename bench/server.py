"""What the benchmark does around its servers: the database of an ini file migrated, and a
server process's memory read. Starting and stopping them is ``tests.support.processes``'s,
which the tests share.
"""

import subprocess
import sys
from pathlib import Path

from tests.support.processes import SetupError


def migrate(ini, env):
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        env=env,
        cwd=ini.parent,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        last_lines = "\n".join(result.stderr.splitlines()[-15:])
        raise SetupError(f"alembic upgrade head failed:\n{last_lines}")


def memory_kib(pid):
    """``VmRSS`` and ``VmHWM`` (peak RSS) of ``pid`` in KiB, from /proc; empty off Linux."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM") if name in fields}
