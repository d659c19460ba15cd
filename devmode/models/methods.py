"""What each training method needs of the data, judged before a run exists (no torch).

    check_for_method(config, data)    # InvalidTrainingData with what to do, or nothing
    few_shot_offer(label_counts)      # why few-shot would suit the dataset, or None

A fine-tune needs what ``examples.check_data`` checks; few-shot (SetFit) also needs pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from devmode.data.examples import InvalidTrainingData, TrainData, check_data
from devmode.models.config import TrainConfig

# Below this many labelled rows in a class, the few-shot method is offered (SetFit's own
# experiments put the crossover with a full fine-tune around 64 examples a class).
FEW_SHOT_BELOW = 64
# Few-shot learns from pairs: a class needs two training rows to have a pair of its own.
FEW_SHOT_MIN_TRAIN_ROWS = 2


def check_for_method(config: TrainConfig, data: TrainData) -> None:
    """Refuse data that ``config``'s method cannot learn from, with what to do."""
    (check_few_shot if config.method == "few-shot" else check_data)(data)


def few_shot_offer(label_counts: Sequence[dict[str, Any]]) -> str | None:
    """Why few-shot would suit a dataset whose ``DatasetStats.label_counts`` these are (a class
    with fewer than ``FEW_SHOT_BELOW`` labelled rows), or None."""
    counts: Counter = Counter()
    for row in label_counts:
        counts[row["label"]] += row["count"]
    small = sorted(((n, label) for label, n in counts.items() if n < FEW_SHOT_BELOW))
    if not small:
        return None
    shown = ", ".join(f"{label} ({n})" for n, label in small)
    return (
        f"Some classes have fewer than {FEW_SHOT_BELOW} labelled rows: {shown}. The few-shot "
        "method (SetFit) usually does better than a fine-tune on so few."
    )


def check_few_shot(data: TrainData) -> None:
    """Refuse data a few-shot run cannot learn from, with what to do."""
    check_data(data)
    counts = Counter(label for _, label in data.train)
    lonely = {
        label: counts.get(label, 0)
        for label in data.labels
        if counts.get(label, 0) < FEW_SHOT_MIN_TRAIN_ROWS
    }
    if lonely:
        raise InvalidTrainingData(
            f"Few-shot learns from pairs of training rows, so each class needs at least "
            f"{FEW_SHOT_MIN_TRAIN_ROWS} in the training split; found {lonely}. Label a few more "
            "rows of those classes (or split with a larger training fraction), then train again."
        )
