"""What one part of myservice costs when served: the same request with and without it.

The part is taken out by an edit of production.ini's text, never by a switch in myservice: an
app factory in bench/ named by ``[app:main]``'s ``use`` line (``bench.feed:nofeed_app``,
``bench.auth:noauth_app``), or a setting operators have (``bench.access``: the access logger's
level). A second server is started from production.ini so edited, beside the shipped server;
wrk drives the comparison's request on both, A B A B, after a short warm-up of each, and the
second server is stopped when the rounds are done.

The cost is the median over the rounds of ``1 - shipped / without``: each round's two runs are
back to back, so load from a neighbour that drifts between rounds weighs on both sides of a
pair alike.
"""

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench.served import Target
from tests.support.processes import free_port, write_ini
from tests.support.processes import serving as running_server


@dataclass(frozen=True)
class Comparison:
    key: str  # the second server's name in tables and JSON
    edit: Callable[[str], str]  # production.ini's text -> the second server's
    scenario: str  # the request wrk drives on both (a key of ``served.SCENARIOS``)
    part: str  # what the second server goes without, for tables and progress lines
    max_cost: float | None = None  # the target: the part costs less than this share, if any


@dataclass
class Outcome:
    shipped_rps: float  # median over the rounds
    without_rps: float
    cost: float  # median over the rounds of 1 - shipped / without
    errors: int  # unexpected answers and socket errors, both servers, all rounds
    rounds: list  # (shipped req/s, without req/s) per round


def served(comparison, ini, directory, driver, shipped, rounds, seconds, progress):
    """The Outcome of ``comparison`` against the ``shipped`` server's Target."""
    port = free_port()
    path = write_ini(ini, directory, port, name=f"{comparison.key}.ini", edit=comparison.edit)
    progress(f"starting myservice without {comparison.part} on port {port}")
    with running_server(path, dict(os.environ), port, 60):
        without = Target(comparison.key, f"http://127.0.0.1:{port}", shipped.deep_path)
        results = driver.rounds(
            [shipped, without], rounds, seconds, progress,
            scenarios=[comparison.scenario], what=f"without {comparison.part}: ",
        )  # fmt: skip
    pairs = list(
        zip(
            results[shipped.key][comparison.scenario],
            results[without.key][comparison.scenario],
            strict=True,
        )
    )
    return Outcome(
        shipped_rps=statistics.median(ours.rps for ours, _ in pairs),
        without_rps=statistics.median(other.rps for _, other in pairs),
        cost=statistics.median(
            1 - ours.rps / other.rps if other.rps else math.nan for ours, other in pairs
        ),
        errors=sum(ours.error_count + other.error_count for ours, other in pairs),
        rounds=[(ours.rps, other.rps) for ours, other in pairs],
    )
