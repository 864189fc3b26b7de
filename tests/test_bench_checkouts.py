"""The order in which the benchmarks that compare checkouts run them: turned each round, so that being
first in a round (a measurable cost on these machines) falls on each checkout alike."""

from __future__ import annotations

from pathlib import Path

from parley_testing.bench_scripts import benchmark_scripts


def test_each_checkout_runs_first_in_as_many_rounds_as_the_others_over_an_even_count():
    with benchmark_scripts("checkouts") as (checkouts,):
        a, b, c = Path("/a"), Path("/b"), Path("/c")
        orders = [checkouts.in_turn([a, b, c], n) for n in range(1, 5)]
    assert orders == [[a, b, c], [c, b, a], [a, b, c], [c, b, a]]
    firsts = [order[0] for order in orders]
    assert firsts.count(a) == firsts.count(c) == 2
    assert all(sorted(order) == [a, b, c] for order in orders)  # every checkout runs in every round
