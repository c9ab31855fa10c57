"""A server started earlier serves a few percent slower on these machines, whatever it serves:
what the bench compares starts as early on average on each side, and a side served by two
servers counts the mean of their figures."""

import statistics

from bench.compare import SIDES
from bench.variants import start_order, variants
from bench.wrk import Result, mean_of


def mean_places(names):
    """{name: mean place in the start order} for a list of names in start order."""
    places = {}
    for place, name in enumerate(names):
        places.setdefault(name, []).append(place)
    return {name: statistics.mean(found) for name, found in places.items()}


def test_each_side_of_a_comparison_starts_as_early_on_average_as_the_other():
    places = mean_places(SIDES)

    assert sorted(places) == ["shipped", "without"]
    assert places["shipped"] == places["without"]
    assert SIDES.count("shipped") == SIDES.count("without")


def test_myservice_and_the_peers_start_as_early_on_average_as_each_other():
    order = start_order(variants())
    twice = [variant.key for variant in variants() if variant.twice]
    places = mean_places([variant.key for variant in order])

    assert {"myservice", "cookiecutter", "fastapi"} <= set(twice)
    assert len({places[key] for key in twice}) == 1
    assert [variant.key for variant in order].count("myservice") == 2
    # every variant is served; only those compared with the peers twice
    assert sorted({variant.key for variant in order}) == sorted(v.key for v in variants())
    assert len(order) == len(variants()) + len(twice)


def test_a_rounds_figure_for_a_side_is_the_mean_of_its_servers():
    early = Result(8000, 8.0, 1000.0, 15.0, 30.0, {"read": 1}, busy_cores=1.25)
    late = Result(8800, 8.0, 1100.0, 13.0, 26.0, {"read": 2, "timeout": 1}, busy_cores=1.75)

    both = mean_of([early, late])

    assert (both.rps, both.p50_ms, both.p99_ms) == (1050.0, 14.0, 28.0)
    assert (both.requests, both.seconds) == (16800, 16.0)
    assert both.errors == {"read": 3, "timeout": 1}
    assert both.busy_cores == 1.5
    assert mean_of([early]) is early
