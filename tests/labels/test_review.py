"""Label review: out-of-fold probabilities and confident learning find planted label errors
(end to end on real sentences: tests/test_label_corrections.py)."""

import numpy as np
import pytest

from devmode.data import near_duplicates
from devmode.labels import review


def test_ranked_issues_are_the_rows_least_likely_to_carry_their_own_label():
    names = ["negative", "neutral", "positive"]
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    probabilities = np.full((120, 3), 0.05)
    probabilities[np.arange(120), y] = 0.9
    wrong = [3, 50, 97]  # the model is sure these rows belong to the next class
    for i in wrong:
        probabilities[i] = 0.05
        probabilities[i, (y[i] + 1) % 3] = 0.9
    probabilities += rng.uniform(0, 0.01, probabilities.shape)
    probabilities /= probabilities.sum(1, keepdims=True)
    issues = review.rank_label_issues(y, probabilities, names)
    assert sorted(i.index for i in issues) == wrong
    first = issues[0]
    assert first.suggested == names[(y[first.index] + 1) % 3] != first.given
    assert first.confidence > 0.8 > 0.1 > first.given_probability
    assert [i.given_probability for i in issues] == sorted(i.given_probability for i in issues)


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["positive"] * 20, "at least two classes"),
        (
            ["positive"] * 20 + ["negative"] * 4,
            r"at least 5 labelled rows; found \{'negative': 4\}",
        ),
        ([], "at least two classes"),
    ],
)
def test_labels_that_cannot_be_reviewed_are_refused_with_what_to_do(labels, expected):
    with pytest.raises(review.ReviewNotPossible, match=expected):
        review.review(["some text"] * len(labels), labels, "embedded")


def test_near_copies_with_different_labels_are_flagged_toward_the_likelier_label():
    texts = [
        "Acme shares rose 5% after a strong quarterly profit beat analysts' forecasts",
        "UPDATE: Acme shares rose 5% after a strong quarterly profit beat analysts' forecasts",
        "Globex cuts 300 jobs as demand for its widgets falls",
        "The board meets on Tuesday to discuss the dividend",
        "The board meets on Tuesday to discuss the dividend!",  # same label: no conflict
    ]
    names = ["negative", "neutral", "positive"]
    y = np.array([2, 0, 0, 1, 1])
    probabilities = np.array(
        [[0.1, 0.2, 0.7], [0.3, 0.2, 0.5], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]
    )
    assert near_duplicates.near_duplicate_groups(texts, review.DUPLICATE_THRESHOLD) == [
        [0, 1],
        [3, 4],
    ]
    (issue,) = review.duplicate_label_issues(texts, y, probabilities, names)
    assert (issue.index, issue.given, issue.suggested) == (1, "negative", "positive")
    assert (issue.reason, issue.duplicate_of) == ("duplicate", 0)
    assert review.duplicate_label_issues(texts, y, probabilities, names, {1}) == []


def test_thorough_mode_fine_tunes_per_fold_and_finds_planted_flips(tiny_model_dir):
    from tests.conftest import tiny_config, tiny_rows

    rows = tiny_rows(150, seed=1)
    names = sorted({r["label"] for r in rows})
    y = np.array([names.index(r["label"]) for r in rows])
    flips = [4, 40, 77, 120]
    for i in flips:
        y[i] = (y[i] + 1) % 3
    seen = []
    probabilities = review.fine_tuned_probabilities(
        [r["text"] for r in rows],
        y,
        names,
        str(tiny_model_dir),
        config=tiny_config(tiny_model_dir, epochs=6),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert probabilities.shape == (150, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-4)
    assert seen[-1][0] == seen[-1][1]  # progress over all folds' steps, to the end
    flagged = {issue.index for issue in review.rank_label_issues(y, probabilities, names)}
    assert len(flagged & set(flips)) >= 3 and len(flagged) <= 10
