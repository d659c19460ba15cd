"""Noise against regressions: Wilson intervals, pass^k and flaky cells, and two runs compared
with Fisher's exact test and Benjamini-Hochberg's correction."""

import math

import pytest

from devmode.suites import noise, reports
from devmode.suites.suite import InvalidSuite, Suite


def test_a_cell_reads_as_passes_out_of_repeats_with_an_interval():
    stats = noise.cell_stats(3, 5)
    assert stats["passes"] == 3 and stats["repeats"] == 5 and stats["pass_rate"] == 0.6
    assert stats["flaky"] and not stats["pass_all"]
    z, n, p = 1.959964, 5, 0.6  # the textbook Wilson score interval
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats["interval"] == pytest.approx([centre - half, centre + half], abs=1e-5)
    assert noise.cell_stats(5, 5)["pass_all"] and not noise.cell_stats(5, 5)["flaky"]
    assert not noise.cell_stats(0, 5)["flaky"] and noise.cell_stats(0, 5)["interval"][0] == 0
    assert (
        noise.cell_stats(0, 0)["pass_rate"] is None and noise.cell_stats(0, 0)["interval"] is None
    )


def twenty(after_changes: dict[str, tuple[int, int]]):
    before = {f"c{i}": (5, 5) for i in range(20)}
    return before, {**before, **after_changes}


def test_a_broad_fall_is_flagged_where_holm_would_flag_nothing():
    before, after = twenty({f"c{i}": (0, 5) for i in range(20)})
    rows = noise.compare_cells(before, after)
    assert all(r["regressed"] for r in rows)
    assert rows[0]["p_value"] == pytest.approx(1 / 252)
    assert rows[0]["p_adjusted"] == pytest.approx(1 / 252)  # 20 equal p-values: BH keeps them
    # Holm's first step would ask for 0.05 / 20 = 0.0025 < 1/252: nothing flagged


def test_one_cell_falling_alone_needs_more_than_five_repeats_two_are_enough_together():
    before, after = twenty({"c3": (0, 5)})
    (alone,) = [r for r in noise.compare_cells(before, after) if r["cell"] == "c3"]
    assert not alone["regressed"] and alone["p_adjusted"] == pytest.approx(20 / 252)
    before, after = twenty({"c3": (0, 5), "c7": (0, 5)})
    flagged = [r["cell"] for r in noise.compare_cells(before, after) if r["regressed"]]
    assert flagged == ["c3", "c7"]


def test_noise_and_improvements_are_not_regressions():
    before, after = twenty({"c1": (3, 5), "c2": (4, 5)})  # sampling noise
    assert not any(r["regressed"] for r in noise.compare_cells(before, after))
    rows = noise.compare_cells({"a": (0, 5)}, {"a": (5, 5)})
    assert rows[0]["p_value"] == 1.0 and not rows[0]["regressed"]


def test_one_repeat_has_nothing_to_test_a_pass_then_a_fail_counts():
    (row,) = noise.compare_cells({"a": (1, 1)}, {"a": (0, 1)})
    assert row["regressed"] and row["p_value"] is None
    assert row["test"] == "one repeat: a pass then a fail counts"
    (row,) = noise.compare_cells({"a": (0, 1)}, {"a": (0, 1)})
    assert not row["regressed"]


def report(cells: dict[str, list[str]], significance=0.05) -> dict:
    """A report of cells whose replies had these outcomes (min pass rate 0.6)."""
    out = []
    for key, outcomes in cells.items():
        passes = outcomes.count("pass")
        out.append(
            {
                "cell": key,
                **noise.cell_stats(passes, len(outcomes)),
                "passed": passes / len(outcomes) >= 0.6,
                "replies": [
                    {"outcome": o, "checks": [], "repeat": i, "detail": "timed out"}
                    for i, o in enumerate(outcomes)
                ],
            }
        )
    return {
        "suite": "s",
        "run": 1,
        "cells": out,
        "variants": [],
        "spec": {"significance": significance},
    }


def test_a_comparison_lists_regressions_and_flaky_cells_apart():
    steady = {f"c{i}": ["pass"] * 5 for i in range(4)}
    before = report(steady)
    after = report(
        {**steady, "c0": ["fail"] * 5, "c1": ["fail"] * 5, "c2": ["pass", "fail"] * 2 + ["pass"]}
    )
    diff = reports.compare(before, after)
    assert [r["cell"] for r in diff["regressions"]] == ["c0", "c1"]
    assert diff["regressions"][0]["p_adjusted"] == pytest.approx(4 / 2 / 252)  # 4 cells, rank 2
    assert diff["flaky"] == ["c2"] and diff["significance"] == 0.05
    assert {c["cell"]: c["regressed"] for c in diff["cells"]} == {
        "c0": True, "c1": True, "c2": False, "c3": False,
    }  # fmt: skip
    assert "2 regressions" in reports.diff_text(diff) and "1 flaky" in reports.diff_text(diff)
    assert [line.split(":")[0] for line in reports.failing(after, diff)][-2:] == [
        "REGRESSION c0", "REGRESSION c1",
    ]  # fmt: skip
    # a stricter suite flags fewer
    stricter = reports.compare(before, {**after, "spec": {"significance": 0.001}})
    assert stricter["regressions"] == []


def test_a_baseline_from_before_repeats_were_counted_is_read_from_its_replies():
    before = report({"a": ["pass"] * 5})
    for cell in before["cells"]:
        del cell["passes"], cell["repeats"]
    diff = reports.compare(before, report({"a": ["fail"] * 5}))
    assert diff["cells"][0]["passes_before"] == 5


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1])
def test_a_significance_outside_zero_and_one_is_refused(value):
    with pytest.raises(InvalidSuite, match="significance must be above 0 and below 1"):
        Suite.from_dict({"prompts": ["hi"], "significance": value})
    assert Suite.from_dict({"prompts": ["hi"], "significance": 0.01}).significance == 0.01


def test_the_messages_give_the_fall_and_the_grid_counts_judged_replies_only():
    before = report({"a": ["pass"] * 5, "b": ["pass"] * 5, "gone": ["pass"] * 5})
    after = report({"a": ["fail"] * 5, "b": ["fail"] * 5, "gone": ["error"] * 5})
    after["cells"][2].update(noise.cell_stats(0, 0), passed=False)  # every reply errored
    diff = reports.compare(before, after)
    assert diff["unjudged"] == ["gone"] and "1 not compared" in reports.diff_text(diff)
    line = next(x for x in reports.failing(after, diff) if x.startswith("REGRESSION a"))
    assert "pass rate 100% -> 0% (p 0.00397, adjusted 0.00397)" in line
    # one errored reply of five: the grid says what the statistics say, 3 of 4 judged
    cell = report({"c": ["pass", "pass", "fail", "pass", "error"]})["cells"][0]
    cell.update(noise.cell_stats(3, 4))
    assert reports.verdict(cell) == "pass 3/4 flaky"
