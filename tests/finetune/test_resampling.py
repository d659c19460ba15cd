"""The corrected interval and t-test of k-fold estimates, against scipy's plain ones."""

import numpy as np
import pytest
from scipy import stats

from devmode.finetune import resampling

BEFORE = [0.91, 0.93, 0.92, 0.95, 0.90]
AFTER = [0.93, 0.94, 0.95, 0.96, 0.92]


def test_without_the_correction_the_test_is_scipys_paired_t_test():
    # n_test / n_train -> 0 leaves 1 / k: the plain paired t-test over folds
    plain = resampling.paired_difference(BEFORE, AFTER, n_train=1e12, n_test=1)
    expected = stats.ttest_rel(AFTER, BEFORE)
    assert plain.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert plain.t == pytest.approx(expected.statistic, rel=1e-6)
    assert plain.mean == pytest.approx(np.mean(np.subtract(AFTER, BEFORE)))


def test_the_correction_widens_the_interval_and_raises_the_p_value():
    plain = resampling.paired_difference(BEFORE, AFTER, n_train=1e12, n_test=1)
    corrected = resampling.paired_difference(BEFORE, AFTER, n_train=400, n_test=100)
    assert corrected.mean == plain.mean and corrected.folds == 5
    assert corrected.p_value > plain.p_value
    # 5 folds: the variance is multiplied by (1/5 + 1/4) / (1/5), so the width by 1.5
    assert (corrected.high - corrected.low) == pytest.approx(1.5 * (plain.high - plain.low))
    assert corrected.low < corrected.mean < corrected.high


def test_folds_that_all_differ_by_the_same_amount_have_no_variance():
    same = resampling.paired_difference(BEFORE, BEFORE, 400, 100)
    assert same.p_value == 1.0 and same.mean == 0 and same.low == same.high == 0
    shifted = resampling.paired_difference(BEFORE, [x + 0.01 for x in BEFORE], 400, 100)
    assert shifted.p_value == 0.0 and shifted.mean == pytest.approx(0.01)


def test_a_fold_interval_is_the_corrected_t_interval_clipped_to_scores():
    scores = [0.92, 0.94, 0.96, 0.98, 1.0]
    estimate = resampling.fold_interval(scores, n_train=4, n_test=1)
    variance = (1 / 5 + 1 / 4) * np.var(scores, ddof=1)
    half = stats.t.ppf(0.975, 4) * np.sqrt(variance)
    assert estimate.mean == pytest.approx(0.96)
    assert estimate.low == pytest.approx(0.96 - half)
    assert estimate.high == 1.0  # 0.96 + 0.059 would pass 1: clipped
    assert estimate.std == pytest.approx(np.std(scores, ddof=1))
