"""The log-cost benchmark's judgement: a median's distribution-free interval decides, not the median alone."""

from __future__ import annotations

import math

import pytest

from parley_testing.bench_scripts import benchmark_scripts


@pytest.fixture(scope="module")
def bench():
    with benchmark_scripts("dev_process", "peers_bench", "log_cost_bench") as (_, _, module):
        yield module


def test_the_interval_is_the_order_statistics_the_sign_test_allows(bench):
    values = [float(v) for v in range(1, 13)]  # 12 pairs: x(3) and x(10) cover the median with 96%
    assert bench.median_interval(values) == (3.0, 10.0)
    assert bench.median_interval(list(reversed(values))) == (3.0, 10.0)
    assert bench.median_interval([float(v) for v in range(1, 9)]) == (1.0, 8.0)  # 8 pairs: the whole range, 99%
    assert bench.median_interval([0.01] * 5) == (-math.inf, math.inf)  # 5 pairs cannot reach 95%


def test_a_cost_is_met_only_when_its_interval_is_within_the_goal(bench):
    small = [0.01, 0.03, -0.02, 0.05, 0.02, 0.0, 0.04, 0.01, -0.01, 0.06, 0.02, 0.03]
    assert bench.verdict(small) == "met"
    noisy = small[:9] + [0.25, 0.3, 0.4]  # the interval's top, x(10), is now over 10%
    assert bench.verdict(noisy) == "not decided"
    assert bench.verdict([c + 0.2 for c in small]) == "not met"
    assert bench.overall(["met", "met"]) == "met"
    assert bench.overall(["met", "not decided"]) == "not decided"
    assert bench.overall(["not decided", "not met"]) == "not met"


def test_the_section_shows_each_figure_and_the_goal(bench):
    pairs = {"round trip": [(0.42 + i / 1000, 0.41) for i in range(12)],
             "time per handshake": [(0.00100, 0.00098)] * 12,
             "join reply": [(9.0, 7.0)] * 12,  # +29% in every pair
             "last delivery": [(250.0, 240.0)] * 12}
    d = {"figures": bench.summarize(pairs), "cpu_per_handshake_ms": {"parley": 1.02, "parley-quiet": 1.0}}
    lines = bench.markdown(d, "cmd")
    text = "\n".join(lines)
    assert lines[:5] == ["## The default log's cost, both modes side by side (issue 15)", "", "```bash", "cmd", "```"]
    assert "| join reply | 12 | 9.00 ms, median of 50 joins | 7.00 | +29% [+29%, +29%] | +29% / +29% | not met |" in text
    assert "| time per handshake | 12 | 1.00 ms | 0.98 | +2% [+2%, +2%] | +2% / +2% | met |" in text
    assert "1.02 ms with the log, 1.00 ms `--quiet` (+2%)" in text
    assert "costs at most 10% of any figure above: **not met**" in text


def test_a_failed_pair_is_left_out_and_counted_and_a_figure_without_pairs_decides_nothing(bench):
    nan = float("nan")
    pairs = {"round trip": [(0.44, 0.43)] * 12,
             "last delivery": [(250.0, 240.0)] * 11 + [(nan, 240.0)]}  # a message that never reached everyone
    d = {"members": 1000, "figures": bench.summarize(pairs)}
    text = "\n".join(bench.markdown(d, "cmd"))
    assert "| last delivery | 11 (1 failed, left out) | 250.00 ms | 240.00 |" in text
    assert "| join reply | 0 | – | – | not measured | – | not decided |" in text
    assert "**not decided**" in text and "nan" not in text


def test_cpu_by_process_is_the_median_per_handshake_and_a_process_missing_from_a_block_counts_zero(bench):
    blocks = [{"gateway": 0.30, "Authorizer": 0.10}, {"gateway": 0.32, "Authorizer": 0.11},
              {"gateway": 0.50, "Authorizer": 0.09, "ConnectFunction": 0.02}]  # an environment started in one block only
    assert bench.cpu_by_process(blocks, 500) == {"Authorizer": 0.2, "ConnectFunction": 0.0, "gateway": 0.64}


def test_the_section_names_each_process_costliest_first(bench):
    d = {"figures": {}, "cpu_per_handshake_by_process_ms": {
        "parley": {"gateway": 0.604, "Authorizer": 0.2, "benchmark client": 0.65},
        "parley-quiet": {"gateway": 0.612, "Authorizer": 0.19, "DynamoDB Local (JVM)": 0.05}}}
    text = "\n".join(bench.markdown(d, "cmd"))
    assert ("By process (ms per handshake, median of the blocks; with the log / `--quiet`): benchmark client 0.650 / 0.000; "
            "gateway 0.604 / 0.612; Authorizer 0.200 / 0.190; DynamoDB Local (JVM) 0.000 / 0.050.") in text


def test_a_control_run_starts_two_logged_trees_and_names_them_first_and_second(bench, tmp_path):
    systems = bench.make_systems(tmp_path, control=True)
    assert list(systems) == ["parley", "parley-quiet"]  # the pairs' slots
    assert [s.key for s in systems.values()] == ["parley", "parley-control"]  # their own outputs
    assert all("--quiet" not in s.cmd for s in systems.values())
    assert "--quiet" in bench.make_systems(tmp_path)["parley-quiet"].cmd
    d = {"control": True, "figures": bench.summarize({"round trip": [(0.42, 0.41)] * 12}),
         "cpu_per_handshake_ms": {"parley": 1.0, "parley-quiet": 1.0}}
    text = "\n".join(bench.markdown(d, "cmd"))
    assert "## Control: two trees both with the log" in text
    assert "| figure | pairs | first tree (median of its blocks) | second tree | first over second:" in text
    assert "1.00 ms first tree, 1.00 ms second tree (+0%)" in text
    assert "Goal" not in text and "verdict" not in text and "| met |" not in text  # the 10% rule is not the control's


def test_an_order_effect_shows_as_two_order_medians_and_stays_out_of_the_median(bench):
    """Going second costs 9% whichever tree it is, the log nothing: the pairs' costs alternate -8% / +9%
    (the logged tree first in even pairs), the median is near 0 and each order's median shows the effect."""
    pairs = {"time per handshake": [(1.00, 1.09) if i % 2 == 0 else (1.09, 1.00) for i in range(24)]}
    f = bench.summarize(pairs)["time per handshake"]
    assert f["by_order"]["logged first"] == pytest.approx(1.00 / 1.09 - 1)
    assert f["by_order"]["quiet first"] == pytest.approx(0.09)
    assert abs(f["median"]) < 0.01
    failed = {"last delivery": [(math.nan, 1.0), (1.0, 1.1), (1.2, 1.0)]}  # pair 0 failed: pair 1 stays "quiet first"
    assert bench.summarize(failed)["last delivery"]["by_order"] == {"logged first": pytest.approx(0.2),
                                                                     "quiet first": pytest.approx(1.0 / 1.1 - 1)}


def test_cpu_by_process_leaves_out_the_bookkeeping_kept_with_each_block(bench):
    blocks = [{"gateway": 0.3, "threads lost": 2, "processes": 6}, {"gateway": 0.31, "threads lost": 0, "processes": 6}]
    assert bench.cpu_by_process(blocks, 500) == {"gateway": pytest.approx(0.61)}


def test_the_section_says_which_tree_started_first(bench):
    d = {"figures": {}, "started_first": "parley-quiet"}
    assert "- Started first: the quiet tree (`--quiet-first`)." in "\n".join(bench.markdown(d, "cmd"))
    d["started_first"] = "parley"
    assert "- Started first: the logged tree." in "\n".join(bench.markdown(d, "cmd"))
