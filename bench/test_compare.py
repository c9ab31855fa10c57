"""A comparison's four servers: each side starts one early and one late, and a round's figure
for a side is the mean of its two servers."""

from types import SimpleNamespace

from bench.compare import SIDES, side_means


def test_each_side_starts_as_early_on_average_as_the_other():
    """A server started earlier serves a few percent slower on this machine: neither side
    may have the earlier starts."""
    places = {side: [place for place, name in enumerate(SIDES) if name == side] for side in SIDES}

    assert sorted(places) == ["shipped", "without"]
    assert sum(places["shipped"]) == sum(places["without"])
    assert len(places["shipped"]) == len(places["without"])


def test_a_rounds_figure_for_each_side_is_the_mean_of_its_servers():
    round_ = [SimpleNamespace(rps=rps) for rps in (900, 1000, 1100, 1000)]  # in SIDES order

    assert side_means(round_) == (950, 1050)
