"""What is served: myservice from production.ini as shipped, the baseline on each server, and
the peers (``bench/peers/``) on theirs.

myservice and the baseline are production.ini with its ``listen`` line pointed at a free local
port; the baseline's only changes are its ``[app:main]`` (``bench.baseline``, a pool as large
as the server's thread count) and, for "spin removed", the server runner of ``[server:main]``.
The peers are started as their own documentation starts them (``bench.peers.serve``).
"""

import configparser
import re
from dataclasses import dataclass

from bench.peers.serve import PEERS
from myservice.edge.server import OWN_OPTIONS
from tests.support.processes import SetupError as BenchError

#: myservice's server runner, which removes waitress's main-loop spin (myservice/server.py).
SPIN_FREE_USE = "egg:myservice"
SPIN_FREE_KEY = "base-nospin"
#: myservice on two server processes (``pserve production.ini processes=2``).
TWO_PROCESSES_KEY = "myservice-2proc"


@dataclass(frozen=True)
class Variant:
    key: str  # short name in tables and JSON
    description: str
    app: str  # "myservice", "baseline" or "peer": which URLs it is driven with
    baseline_server: str | None = None  # None: production.ini unchanged; else a `use = ...`
    processes: int | None = None  # myservice on this many server processes (production.ini's)
    twice: bool = False  # two servers, one started early and one late (``start_order``)


def variants():
    """myservice, the baseline on stock waitress and on ``egg:myservice`` (spin removed), and
    the peers. myservice and the peers, whose ratios are targets, are served twice each."""
    return [
        Variant("myservice", "myservice, production.ini as shipped", "myservice", twice=True),
        Variant(
            TWO_PROCESSES_KEY,
            "myservice, pserve production.ini processes=2",
            "myservice",
            processes=2,
        ),
        Variant(
            "base-stock", "baseline on stock egg:waitress#main", "baseline", "egg:waitress#main"
        ),
        Variant(
            SPIN_FREE_KEY, f"baseline on {SPIN_FREE_USE} (spin removed)", "baseline", SPIN_FREE_USE
        ),
        *(Variant(key, description, "peer", twice=True) for key, description in PEERS.items()),
    ]


def start_order(variants):
    """The variants in the order their servers start and are driven: those served ``twice``,
    then the others, then those served twice again in the mirror order. A server started
    earlier serves a few percent slower (``bench.served``): this way each variant served twice
    starts, on average, at the same place as every other such variant (myservice first and
    last, the peers second and second-to-last, ...), and its figure is the mean of its two."""
    twice = [variant for variant in variants if variant.twice]
    once = [variant for variant in variants if not variant.twice]
    return [*twice, *once, *reversed(twice)]


def section(text, name):
    """The span of ``[name]``'s body in ``text`` (from after its header to the next section)."""
    match = re.search(rf"(?ms)^\[{re.escape(name)}\][^\n]*\n(.*?)(?=^\[|\Z)", text)
    if match is None:
        raise BenchError(f"the ini file has no [{name}] section")
    return match.span(1)


def server_threads(text):
    parser = configparser.ConfigParser(defaults={"here": "."})
    parser.read_string(text)
    return parser.get("server:main", "threads", fallback="4")


def replace_use(text, name, use):
    """``text`` with the ``use = ...`` line of its ``[name]`` section saying ``use = <use>``."""
    start, end = section(text, name)
    body, replaced = re.subn(r"(?m)^use\s*=.*$", f"use = {use}", text[start:end])
    if replaced != 1:
        raise BenchError(f"[{name}] has no single 'use = ...' line to replace")
    return text[:start] + body + text[end:]


def processes_editor(count):
    """An edit of production.ini's text that serves myservice from ``count`` processes, as
    ``pserve production.ini processes=<count>`` does: by ``[DEFAULT]``'s ``processes``, which
    ``[server:main]`` reads with ``get processes = processes``. (PasteDeploy drops a section's
    own option whose name is also in ``[DEFAULT]``: ``processes = 2`` written in
    ``[server:main]`` would be ignored, and one process served.)"""

    def edit(text):
        start, end = section(text, "DEFAULT")
        defaults, replaced = re.subn(
            r"(?m)^processes\s*=.*$", f"processes = {count}", text[start:end]
        )
        if replaced != 1:
            raise BenchError("[DEFAULT] has no single 'processes = ...' line")
        return text[:start] + defaults + text[end:]

    return edit


def app_editor(use):
    """An edit of production.ini's text whose ``[app:main]`` is served by ``use`` (e.g.
    ``call:bench.auth:noauth_app``); the app's settings and the server stay as they are."""
    return lambda text: replace_use(text, "app:main", use)


def baseline_editor(use):
    """An edit of production.ini's text that serves the baseline with ``use`` as its server."""

    def edit(text):
        threads = server_threads(text)
        text = replace_use(text, "server:main", use)
        if use != SPIN_FREE_USE:  # stock waitress refuses the options only myservice's takes
            start, end = section(text, "server:main")
            server = re.sub(
                rf"(?m)^(?:get\s+)?(?:{'|'.join(OWN_OPTIONS)})\s*=.*\n", "", text[start:end]
            )
            text = text[:start] + server + text[end:]
        start, end = section(text, "app:main")
        app = f"use = call:bench.baseline:app_factory\npool_size = {threads}\n\n"
        return text[:start] + app + text[end:]

    return edit
