"""Honest probabilities: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks") fitted on a run's validation split, and how far a model's confidence is from its
accuracy (expected calibration error, and the reliability diagram's bins).

    temperature = fit_temperature(validation_logits, validation_labels)   # one number, > 0
    probabilities = softmax(test_logits, temperature)                     # same argmax
    expected_calibration_error(probabilities, test_labels)                # 15 equal-width bins

A temperature divides the logits before the softmax: above 1 it softens an over-confident model,
below 1 it sharpens a timid one. It never changes which class is predicted, so accuracy and
macro-F1 stay as they were; only the probabilities (the Monitor's index, alerts, the labelling
order, ``classify`` and ``/predict``) move. Every scorer applies the temperature its model folder
stores (``devmode_model.json``: ``temperature``); a folder without one scores at 1.

Knows nothing of SQLite, torch or Streamlit (importing it loads no torch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devmode.errors import DevmodeError
from devmode.models.base_models import MODEL_CARD

# Equal-width confidence bins of the expected calibration error (the usual 15 of Guo et al.).
ECE_BINS = 15
# The temperatures searched (log-spaced bounds): wider than any fine-tuned model needs.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def stored_temperature(model_dir: str | Path) -> float:
    """The temperature a model folder's scores are divided by: its card's, else 1 (a Hugging
    Face folder, or a model saved before runs were calibrated). A folder's temperature is
    written when its run ends and never changes, so rows a model scored were scored at it."""
    card = Path(model_dir) / MODEL_CARD
    if not card.is_file():
        return 1.0
    return float(json.loads(card.read_text()).get("temperature") or 1.0)


class CalibrationNotPossible(DevmodeError):
    """The validation rows cannot fit a temperature (too few, or one class only)."""


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, in float64 then float32."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(
    logits: np.ndarray, labels: np.ndarray, temperature: float, smoothing: float = 0.0
) -> float:
    """Mean cross-entropy at ``temperature`` against the true labels, each target moved
    ``smoothing`` of the way toward uniform."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    log_p = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
    own = log_p[np.arange(len(labels)), labels]
    return float(-((1 - smoothing) * own + smoothing * log_p.mean(axis=1)).mean())


def check_calibratable(labels: np.ndarray, names: Sequence[str] | None = None) -> None:
    """Refuse validation labels (class ids into ``names``) a temperature cannot be fitted on,
    saying what to do."""
    classes = np.unique(labels)
    if len(labels) < 2 or len(classes) < 2:
        found = ", ".join(str(names[c] if names else c) for c in classes) or "none"
        raise CalibrationNotPossible(
            f"A temperature is fitted on the validation split, which needs rows of at least two "
            f"classes; found {len(labels)} row{'s' if len(labels) != 1 else ''} of class {found}. "
            "Split the dataset again with a larger validation fraction (the split is drawn "
            "within each label); the model scores with its raw probabilities until then."
        )


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, names: Sequence[str] | None = None
) -> float:
    """The temperature that minimises the validation rows' cross-entropy (a bounded search
    over log T: one convex parameter, so the optimum is the optimum). ``labels`` are class ids
    into ``names`` (which only name them in a refusal).

    The targets are smoothed by one pseudo-row in ``n + 1`` (Laplace's rule of succession): a
    validation split without a single mistake would otherwise drive the temperature to its
    lower bound and every probability to 1, which a few hundred rows cannot show. On a split
    of hundreds of rows the smoothing moves the optimum by well under a percent.

    :raises CalibrationNotPossible: fewer than two rows, or a single class
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    check_calibratable(labels, names)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(
            logits, labels, float(np.exp(log_t)), 1 / (len(labels) + 1)
        ),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """The reliability diagram: per equal-width bin of top-class confidence (the empty ones
    left out), its range, rows, mean confidence and accuracy."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 falls in the first
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    found = []
    for i in range(bins):
        members = index == i
        if members.any():
            found.append(
                {
                    "low": i / bins,
                    "high": (i + 1) / bins,
                    "rows": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return found


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """The rows-weighted mean gap between confidence and accuracy over equal-width bins."""
    total = len(labels)
    if not total:
        return 0.0
    return float(
        sum(
            b["rows"] / total * abs(b["accuracy"] - b["confidence"])
            for b in reliability_bins(probabilities, labels, bins)
        )
    )


def calibration_report(
    logits: np.ndarray, labels: np.ndarray, temperature: float
) -> dict[str, Any]:
    """What a report shows about rows the temperature was not fitted on: the expected
    calibration error before (T = 1) and after, and both reliability diagrams."""
    before = softmax(logits)
    after = softmax(logits, temperature)
    return {
        "temperature": temperature,
        "bins": ECE_BINS,
        "rows": int(len(labels)),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "reliability_before": reliability_bins(before, labels),
        "reliability_after": reliability_bins(after, labels),
    }
