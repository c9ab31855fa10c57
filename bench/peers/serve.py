"""Each peer on its conventional server, on a free port, until the block ends.

- cookiecutter: ``pserve`` of an ini file of its own, ``use = egg:waitress#main`` with
  waitress's defaults (4 threads), as pyramid-cookiecutter-starter's production.ini serves it;
- fastapi: ``uvicorn bench.peers.fastapi_app:app`` (one process, uvloop and httptools), as
  FastAPI's deployment guide starts it, with its access log as uvicorn writes it by default.
"""

import os
from contextlib import contextmanager

from tests.support.processes import ServedProcess as Server
from tests.support.processes import health_answers, running_process, venv_command

COOKIECUTTER_INI = """\
[app:main]
use = call:bench.peers.cookiecutter:main
sqlalchemy.url = {url}
retry.attempts = 3

[server:main]
use = egg:waitress#main
listen = 127.0.0.1:{port}
"""

#: Peer key: how it is described in progress lines.
PEERS = {
    "cookiecutter": "the cookiecutter pattern (ORM + pyramid_tm) on stock waitress",
    "fastapi": "FastAPI + SQLAlchemy on uvicorn",
}


def command(key, directory, port, url):
    if key == "cookiecutter":
        ini = directory / "cookiecutter.ini"
        ini.write_text(COOKIECUTTER_INI.format(url=url.replace("%", "%%"), port=port))
        return [venv_command("pserve"), str(ini)]
    return [venv_command("uvicorn"), "bench.peers.fastapi_app:app",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


@contextmanager
def running_peer(key, directory, port, url, startup_seconds):
    """The peer ``key`` serving the users table of ``url`` (a SQLAlchemy URL) on ``port``."""
    log_path = directory / f"{key}.log"
    with running_process(
        command(key, directory, port, url),
        log_path,
        lambda: health_answers(port),
        startup_seconds,
        waiting_for=f"{key}'s GET /health to answer 200",
        env={**os.environ, "DATABASE_URL": url},
        cwd=directory,
    ) as process:
        yield Server(process, port, log_path)
