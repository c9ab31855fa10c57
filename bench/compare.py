"""What one part of myservice costs when served: the same request with and without it.

The part is taken out by an edit of production.ini's text, never by a switch in myservice: an
app factory in bench/ named by ``[app:main]``'s ``use`` line (``bench.feed:nofeed_app``,
``bench.auth:noauth_app``), or a setting operators have (``bench.access``: the access logger's
level). Four fresh servers are started from production.ini, two as shipped and two so edited,
in the order shipped, without, without, shipped: on this machine a server started earlier
serves a few percent slower than an identical one started after it (docs/performance.md, round
six), as much as most parts cost, so each side gets one early and one late start. wrk drives
the comparison's request on the four in that order, round after round, after a short warm-up
of each, and the servers are stopped when the rounds are done.

The cost is the median over the rounds of ``1 - shipped / without``, each side's req/s the
mean of its two servers in the round (``served.Driver.rounds``): a round's runs are back to
back, so load from a neighbour that drifts between rounds weighs on both sides of a round
alike.
"""

import math
import os
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from bench.served import Target
from tests.support.processes import free_port, write_ini
from tests.support.processes import serving as running_server

#: Which side each of the four servers is on, in the order they start and are driven.
SIDES = ("shipped", "without", "without", "shipped")


@dataclass(frozen=True)
class Comparison:
    key: str  # the comparison's name in tables and JSON, and its servers' names
    edit: Callable[[str], str]  # production.ini's text -> the edited servers'
    scenario: str  # the request wrk drives on every server (a key of ``served.SCENARIOS``)
    part: str  # what the edited servers go without, for tables and progress lines
    max_cost: float | None = None  # the target: the part costs less than this share, if any


@dataclass
class Outcome:
    shipped_rps: float  # median over the rounds
    without_rps: float
    cost: float  # median over the rounds of 1 - shipped / without
    errors: int  # unexpected answers and socket errors, all servers, all rounds
    rounds: list  # (shipped req/s, without req/s) per round, each the mean of two servers


def served(comparison, ini, directory, driver, rounds, seconds, progress):
    """The Outcome of ``comparison``, on four fresh servers (see the module)."""
    progress(f"starting myservice twice as shipped and twice without {comparison.part}")
    with ExitStack() as stack:
        targets = []
        for number, side in enumerate(SIDES):
            port = free_port()
            edit = comparison.edit if side == "without" else None
            name = f"{comparison.key}-{side}-{number}.ini"
            path = write_ini(ini, directory, port, name=name, edit=edit)
            stack.enter_context(running_server(path, dict(os.environ), port, 60))
            targets.append(Target(side, f"http://127.0.0.1:{port}", None))
        results = driver.rounds(
            targets, rounds, seconds, progress,
            scenarios=[comparison.scenario], what=f"without {comparison.part}: ",
        )  # fmt: skip
    shipped, without = (results[side][comparison.scenario] for side in ("shipped", "without"))
    pairs = [(ours.rps, other.rps) for ours, other in zip(shipped, without, strict=True)]
    return Outcome(
        shipped_rps=statistics.median(ours for ours, _ in pairs),
        without_rps=statistics.median(other for _, other in pairs),
        cost=statistics.median(1 - ours / other if other else math.nan for ours, other in pairs),
        errors=sum(run.error_count for run in shipped + without),
        rounds=pairs,
    )
