"""Telling noise from a regression. Each cell's passes out of its repeats, with a 95% Wilson
interval, pass^k (every reply passed) and whether it is flaky; and two runs compared cell by
cell with Fisher's exact test, one-sided (fewer passes after), the p-values of all the cells
compared corrected by Benjamini and Hochberg.

    stats = cell_stats(passes=3, repeats=5)   # pass_rate 0.6, interval [0.23, 0.88], flaky
    rows = compare_cells(before, after, significance=0.05)   # p_value, p_adjusted, regressed

Why Benjamini-Hochberg and not Holm: with 20 cells of 5 repeats, the smallest p-value a cell
can reach (5/5 passes, then 0/5) is 1/252 = 0.004. Holm's first step asks for 0.05 / 20 =
0.0025, so it never flags anything, however many cells fall; BH flags every cell of a broad
fall (two or more cells at 1/252 already: 0.004 x 20 / 2 = 0.04). One cell alone falling
5/5 -> 0/5 among 20 is not flagged by either (BH's adjusted p is 0.08): more repeats make it
visible. With one repeat on both sides there is nothing to test: a pass then a fail is a
regression, and the row says so.
"""

from __future__ import annotations

from typing import Any

# The interval's coverage.
CONFIDENCE = 0.95
# The suite's `significance` when it sets none.
DEFAULT_SIGNIFICANCE = 0.05


def wilson(passes: int, repeats: int) -> list[float] | None:
    """The 95% Wilson score interval of ``passes`` out of ``repeats`` (None without replies)."""
    if repeats <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(passes, repeats).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [float(ci.low), float(ci.high)]


def cell_stats(passes: int, repeats: int) -> dict[str, Any]:
    """``passes``, ``repeats``, ``pass_rate`` (pass@1), ``interval``, ``pass_all`` (pass^k)
    and ``flaky`` (some passed and some failed)."""
    return {
        "passes": passes,
        "repeats": repeats,
        "pass_rate": passes / repeats if repeats else None,
        "interval": wilson(passes, repeats),
        "pass_all": repeats > 0 and passes == repeats,
        "flaky": 0 < passes < repeats,
    }


def fewer_passes_p(before: tuple[int, int], after: tuple[int, int]) -> float:
    """One-sided Fisher's exact p-value that the pass rate fell from ``before`` to ``after``,
    each ``(passes, repeats)``."""
    from scipy.stats import fisher_exact

    (p0, n0), (p1, n1) = before, after
    table = [[p0, n0 - p0], [p1, n1 - p1]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """The p-values adjusted for the false discovery rate (Benjamini-Hochberg), same order."""
    if not p_values:
        return []
    from scipy.stats import false_discovery_control

    return [float(p) for p in false_discovery_control(p_values, method="bh")]


def compare_cells(
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    *,
    significance: float = DEFAULT_SIGNIFICANCE,
) -> list[dict[str, Any]]:
    """A row per cell judged in both runs (``{cell: (passes, repeats)}``, repeats > 0):
    the passes before and after, ``p_value`` and ``p_adjusted`` (None with one repeat on both
    sides), and ``regressed``: the rate fell significantly, or, with one repeat each, a pass
    became a fail."""
    keys = [k for k in after if k in before and before[k][1] and after[k][1]]
    single = {k for k in keys if before[k][1] == 1 and after[k][1] == 1}
    tested = [k for k in keys if k not in single]
    p_values = [fewer_passes_p(before[k], after[k]) for k in tested]
    adjusted = dict(zip(tested, benjamini_hochberg(p_values), strict=True))
    raw = dict(zip(tested, p_values, strict=True))
    rows = []
    for key in keys:
        (p0, n0), (p1, n1) = before[key], after[key]
        if key in single:
            regressed, why = p0 == 1 and p1 == 0, "one repeat: a pass then a fail counts"
        else:
            regressed = adjusted[key] <= significance and p1 / n1 < p0 / n0
            why = f"Fisher one-sided, BH over {len(tested)} cells"
        rows.append(
            {
                "cell": key,
                "passes_before": p0,
                "repeats_before": n0,
                "passes_after": p1,
                "repeats_after": n1,
                "p_value": raw.get(key),
                "p_adjusted": adjusted.get(key),
                "regressed": regressed,
                "test": why,
            }
        )
    return rows
