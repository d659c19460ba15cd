"""Statistics of k-fold estimates: an interval around a recipe's mean score, and a paired test
of two recipes on the same folds, both corrected for the folds' overlapping training sets.

    interval = fold_interval([0.93, 0.95, 0.94, 0.96, 0.92], n_train=1812, n_test=453)
    compared = paired_difference(before, after, n_train=1812, n_test=453)   # after - before
    compared.p_value, compared.interval

The folds' scores are not independent: any two folds' models share (k - 2) / (k - 1) of their
training rows, so the plain variance of the fold scores understates how much a score would
move on new data, and a plain t-test over folds finds differences that are not there (Dietterich
1998; Bouckaert & Frank 2004). Nadeau & Bengio (2003, "Inference for the Generalization Error")
correct the variance by a factor: ``1 / k + n_test / n_train`` in place of ``1 / k``. Both the
interval and the test here use that corrected variance, with k - 1 degrees of freedom.

Knows nothing of SQLite, torch or Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# The level of every interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over folds with its corrected 95% interval."""

    mean: float
    std: float  # of the fold scores (ddof 1)
    low: float
    high: float
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Difference:
    """A paired difference over the same folds (second minus first), its corrected interval
    and two-sided p-value."""

    mean: float
    low: float
    high: float
    t: float
    p_value: float
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corrected_variance(values: np.ndarray, n_train: float, n_test: float) -> float:
    """Nadeau and Bengio's variance of the mean of k fold scores: the fold scores' variance
    times ``1 / k + n_test / n_train``."""
    k = len(values)
    if k < 2:
        return float("nan")
    return float((1 / k + n_test / n_train) * np.var(values, ddof=1))


def _half_width(values: np.ndarray, n_train: float, n_test: float) -> float:
    from scipy import stats

    k = len(values)
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, k - 1)) * np.sqrt(
        corrected_variance(values, n_train, n_test)
    )


def fold_interval(scores: Sequence[float], n_train: float, n_test: float) -> Estimate:
    """The mean of ``scores`` (one per fold) with a corrected 95% interval (clipped to [0, 1],
    where scores live)."""
    values = np.asarray(scores, dtype=np.float64)
    mean = float(values.mean())
    half = _half_width(values, n_train, n_test)
    return Estimate(
        mean=mean,
        std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        low=float(max(0.0, mean - half)),
        high=float(min(1.0, mean + half)),
        folds=len(values),
    )


def paired_difference(
    first: Sequence[float], second: Sequence[float], n_train: float, n_test: float
) -> Difference:
    """``second - first`` fold by fold: the mean difference, its corrected 95% interval
    (clipped to [-1, 1]), and the corrected resampled t-test's two-sided p-value. Folds whose differences are all equal
    have no variance: p is 1 when they are all 0, else 0."""
    from scipy import stats

    differences = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    k = len(differences)
    mean = float(differences.mean())
    variance = corrected_variance(differences, n_train, n_test)
    if variance > 0:
        t = mean / np.sqrt(variance)
        p = float(2 * stats.t.sf(abs(t), k - 1))
    else:
        t = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
        p = 1.0 if mean == 0 else 0.0
    half = _half_width(differences, n_train, n_test) if variance > 0 else 0.0
    return Difference(  # a difference of two scores in [0, 1] lies in [-1, 1]
        mean=mean,
        low=float(max(-1.0, mean - half)),
        high=float(min(1.0, mean + half)),
        t=float(t),
        p_value=p,
        folds=k,
    )
