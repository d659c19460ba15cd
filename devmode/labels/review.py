"""Which labels look wrong: out-of-fold probabilities for every labelled row, then confident
learning (``cleanlab``) to rank the rows most likely mislabelled.

    features = sentence_features(texts, "embedded")          # the frozen base model, once
    probabilities = out_of_fold_probabilities(features, y)    # no row is judged by a model it trained
    for issue in rank_label_issues(y, probabilities, names):
        print(issue.index, issue.suggested, issue.confidence)

Quick mode works on the frozen base model's sentence vectors. Each row is the mean-pooled
output of every transformer layer, each layer's vector scaled to unit length, side by side. Two
classifiers are averaged: a logistic regression and a 15-nearest-neighbour vote (cosine).
Cleanlab's ``num_label_issues`` says how many rows to flag, and the rows with the lowest
probability for their own label are the ones flagged. Near-copies of one text that carry
different labels are flagged too (``near_duplicates.near_duplicate_groups``): a person labelled the same thing
two ways, whatever the model thinks.

What was measured (``benchmarks/label_review.py``, PhraseBank all-agree, 5% of labels flipped,
mean of 5 draws). The last layer with a logistic regression alone and cleanlab's defaults
flagged 85% of flips at 49% precision (197 rows); its lowest 113 rows held 72% at 72%. The
choices above flag 124 rows holding 80% of flips at 73% precision. The goal of 85% at 65% is
not met yet in quick mode: frozen vectors classify about 90% of rows right, so the hardest
clean rows compete with the flips.

Thorough mode fine-tunes the base model once per fold instead (``fine_tuned_probabilities``):
better probabilities (about 94% of rows right), in minutes rather than seconds.

Knows nothing of SQLite or Streamlit: ``corrections.py`` stores what a person decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from devmode.data.near_duplicates import near_duplicate_groups
from devmode.errors import DevmodeError

FOLDS = 5
MODES = ("quick", "thorough")
# Thorough mode fine-tunes once per fold; two epochs reach ~0.94 held-out accuracy on PhraseBank
# all-agree (more epochs start to learn the flipped labels back).
THOROUGH_EPOCHS = 2
# Estimated Jaccard similarity of two texts' character 5-grams above which they are one text
# (re-posts, a changed figure or ticker): such copies should carry one label.
DUPLICATE_THRESHOLD = 0.8
NEIGHBOURS = 15
# Inverse regularisation of the logistic regression per 384 features (all-MiniLM-L6-v2's width):
# wide multi-layer vectors need more of it.
REGULARISATION = 0.01
# A neighbour vote gives hard 0s; this much probability is spread before averaging.
SMOOTHING = 0.01


class ReviewNotPossible(DevmodeError):
    """The labels cannot be reviewed as they are (one class, or too few rows per class)."""


@dataclass(frozen=True)
class LabelIssue:
    """A row whose label looks wrong: its index among the reviewed rows, the label it has, the
    label the model suggests, the model's probability for that suggestion, and the
    probability it gives the row's own label (lower is more suspect)."""

    index: int
    given: str
    suggested: str
    confidence: float
    given_probability: float
    reason: str = "model"  # model: confident learning; duplicate: a near-copy labelled otherwise
    duplicate_of: int | None = None  # with "duplicate": a near-copy's index that has ``suggested``


def check_reviewable(labels: Sequence[str], folds: int = FOLDS) -> None:
    """Refuse labels that out-of-fold predictions cannot be made for, with what to do."""
    values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    if len(values) < 2:
        raise ReviewNotPossible(
            f"Reviewing labels needs at least two classes; found only {values.tolist() or 'none'}. "
            "Add rows of another class, or map another column as the label."
        )
    scarce = {str(v): int(c) for v, c in zip(values, counts, strict=True) if c < folds}
    if scarce:
        raise ReviewNotPossible(
            f"Each row is judged by models trained on the other {folds - 1} of {folds} folds, so "
            f"every class needs at least {folds} labelled rows; found {scarce}. Label more rows "
            "of those classes, or merge them into another class."
        )


def sentence_features(
    texts: Sequence[str],
    base_model: str,
    *,
    batch_size: int = 128,
    max_length: int = 128,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """Each text as the mean-pooled output of every layer of the frozen base model, each layer
    scaled to unit length, side by side: (texts, layers x hidden size) float32."""
    import torch

    from devmode.models.classifier import encode, forward_sorted, load_encoder, mean_pool

    encoder, tokenizer = load_encoder(base_model)
    encoder.eval()
    layers = encoder.config.num_hidden_layers
    width = layers * encoder.config.hidden_size
    encoded = encode(tokenizer, [(t, "") for t in texts], [""], max_length)
    done = [0]

    def pooled_layers(input_ids, attention_mask):
        out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        pooled = [
            mean_pool(hidden, attention_mask)
            for hidden in out.hidden_states[1:]  # the layers' outputs, not the embeddings
        ]
        done[0] += len(input_ids)
        on_progress(done[0], len(texts))
        return torch.cat([torch.nn.functional.normalize(p, dim=-1) for p in pooled], dim=-1)

    pad_id = tokenizer.pad_token_id or 0
    return forward_sorted(
        pooled_layers, encoded, width, batch_size, pad_id, torch.device("cpu"), False
    )


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Class probabilities for every row from models that never saw it: the mean of a logistic
    regression and a nearest-neighbour vote, each cross-validated over ``folds`` folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    regression = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=REGULARISATION * 384 / features.shape[1], max_iter=3000),
    )
    linear = cross_val_predict(regression, features, labels, cv=split, method="predict_proba")
    neighbours = min(NEIGHBOURS, len(labels) - len(labels) // folds - 1)
    vote = cross_val_predict(
        KNeighborsClassifier(neighbours, metric="cosine", weights="distance"),
        features,
        labels,
        cv=split,
        method="predict_proba",
    )
    vote = (vote + SMOOTHING) / (vote + SMOOTHING).sum(1, keepdims=True)
    return (linear + vote) / 2


def rank_label_issues(
    labels: np.ndarray, probabilities: np.ndarray, names: Sequence[str]
) -> list[LabelIssue]:
    """The rows cleanlab estimates to be mislabelled, most suspect first. ``labels`` are class
    ids into ``names``; ``probabilities`` are out of fold."""
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    count = num_label_issues(labels, probabilities, estimation_method="off_diagonal")
    issues = []
    for index in np.argsort(quality, kind="stable")[:count]:
        suggested = int(probabilities[index].argmax())
        if suggested == labels[index]:
            continue  # unsure, but no other class is likelier: nothing to suggest
        issues.append(
            LabelIssue(
                index=int(index),
                given=names[labels[index]],
                suggested=names[suggested],
                confidence=float(probabilities[index, suggested]),
                given_probability=float(probabilities[index, labels[index]]),
            )
        )
    return issues


def duplicate_label_issues(
    texts: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    already: set[int] = frozenset(),
) -> list[LabelIssue]:
    """Near-copies that carry different labels: each group takes the label of its own that the
    out-of-fold probabilities, summed over the group, favour; the other rows are suggested it."""
    issues = []
    for group in near_duplicate_groups(texts, DUPLICATE_THRESHOLD):
        given = sorted({int(labels[i]) for i in group})
        if len(given) < 2:
            continue
        summed = probabilities[group].sum(0)
        best = max(given, key=lambda c: summed[c])
        keeper = next(i for i in group if labels[i] == best)
        issues.extend(
            LabelIssue(
                index=i,
                given=names[labels[i]],
                suggested=names[best],
                confidence=float(probabilities[i, best]),
                given_probability=float(probabilities[i, labels[i]]),
                reason="duplicate",
                duplicate_of=keeper,
            )
            for i in group
            if labels[i] != best and i not in already
        )
    return issues


def fine_tuned_probabilities(
    texts: Sequence[str],
    labels: np.ndarray,
    names: Sequence[str],
    base_model: str,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    config=None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> np.ndarray:
    """Thorough mode's out-of-fold probabilities: the base model fine-tuned ``folds`` times
    (devmode's own loop and defaults, ``THOROUGH_EPOCHS`` epochs, the best kept on a tenth of the
    training folds), each scoring the fold it never saw. ``config`` (a ``TrainConfig``) replaces
    those settings."""
    import tempfile

    from sklearn.model_selection import StratifiedKFold, train_test_split

    from devmode.data.examples import TrainData
    from devmode.finetune.training import train
    from devmode.models.config import TrainConfig
    from devmode.models.scorers import load_scorer

    texts = list(texts)
    probabilities = np.zeros((len(texts), len(names)), dtype=np.float32)
    # the recipe the review was measured with: the better of its epochs, one rate for all layers
    # (averaging would keep the last epoch, which has begun to learn the flipped labels back)
    config = config or TrainConfig(
        base_model=base_model,
        epochs=THOROUGH_EPOCHS,
        seed=seed,
        layer_lr_decay=1.0,
        average_last_epochs=0,
        early_stopping_patience=2,
    )
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)

    def rows(indices) -> list[tuple[str, str]]:
        return [(texts[i], names[labels[i]]) for i in indices]

    for fold, (trained, held) in enumerate(split.split(texts, labels)):
        fit, check = train_test_split(
            trained, test_size=0.1, stratify=labels[trained], random_state=seed
        )
        data = TrainData(rows(fit), rows(check), rows(held), list(names))

        def progress(p, fold=fold):  # in thousandths of a fold: folds differ in steps
            on_progress(fold * 1000 + 1000 * p.step // max(1, p.total_steps), folds * 1000)

        with tempfile.TemporaryDirectory(prefix="devmode-review-") as folder:
            result = train(config, data, output_dir=folder, on_progress=progress)
            scorer = load_scorer(result.output_dir, precision="fp32")
            probabilities[held] = scorer.score([texts[i] for i in held]).probabilities
        on_progress((fold + 1) * 1000, folds * 1000)  # early stopping may end a fold sooner
    return probabilities


def review(
    texts: Sequence[str],
    labels: Sequence[str],
    base_model: str,
    *,
    mode: str = "quick",
    seed: int = 0,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[LabelIssue]:
    """The rows whose labels look wrong, most suspect first: ``quick`` (frozen vectors, seconds)
    or ``thorough`` (k-fold fine-tuning, minutes)."""
    if mode not in MODES:
        raise ReviewNotPossible(f"mode must be one of {', '.join(MODES)}; found {mode!r}.")
    check_reviewable(labels)
    names = sorted({str(label) for label in labels})
    y = np.array([names.index(str(label)) for label in labels])
    if mode == "thorough":
        probabilities = fine_tuned_probabilities(
            texts, y, names, base_model, seed=seed, on_progress=on_progress
        )
    else:
        features = sentence_features(texts, base_model, on_progress=on_progress)
        probabilities = out_of_fold_probabilities(features, y, seed=seed)
    issues = rank_label_issues(y, probabilities, names)
    return issues + duplicate_label_issues(
        texts, y, probabilities, names, {issue.index for issue in issues}
    )
