"""How good a classifier is: the report every run shows (accuracy, macro-F1, per class,
confusion matrix, the most confident mistakes) and the baselines it must beat.

    report = classification_report(labels, y_true, probabilities, texts)
    majority_report(data)            # always the commonest training label
    zero_shot_report(config, data)   # the untrained base model, by similarity to label names
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from devmode.data.examples import TrainData
from devmode.models.classifier import (
    Encoded,
    TextClassifier,
    encode,
    forward_sorted,
    pick_device,
    predict_probabilities,
)
from devmode.models.config import TrainConfig
from devmode.models.zero_shot import ZeroShotClassifier


def evaluate(
    model: TextClassifier,
    encoded: Encoded,
    labels: list[str],
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> tuple[dict[str, Any], float]:
    """The model's report on ``encoded`` (a validation split) and its mean cross-entropy."""
    probabilities = predict_probabilities(model, encoded, batch_size, pad_id, device, use_bf16)
    y_true = encoded.labels.numpy()
    loss = float(-np.log(probabilities[np.arange(len(y_true)), y_true] + 1e-12).mean())
    return classification_report(labels, y_true, probabilities), loss


def classification_report(
    labels: list[str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    texts: list[str] | None = None,
    n_mistakes: int = 10,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, confident mistakes."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_pred = probabilities.argmax(1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    report: dict[str, Any] = {
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(f1.mean()),
        "per_class": [
            {
                "label": labels[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in classes
        ],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": labels,
        "n": int(len(y_true)),
    }
    if texts is not None:
        wrong = np.flatnonzero(y_pred != y_true)
        confident = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])][:n_mistakes]
        report["mistakes"] = [
            {
                "text": texts[i],
                "label": labels[y_true[i]],
                "predicted": labels[y_pred[i]],
                "confidence": float(probabilities[i, y_pred[i]]),
            }
            for i in confident
        ]
    return report


def majority_report(data: TrainData) -> dict[str, Any]:
    """The baseline every classifier must beat: always predict the commonest training label."""
    majority = Counter(label for _, label in data.train).most_common(1)[0][0]
    index = {label: i for i, label in enumerate(data.labels)}
    y_true = np.array([index[label] for _, label in data.test])
    probabilities = np.zeros((len(y_true), len(data.labels)), dtype=np.float32)
    probabilities[:, index[majority]] = 1.0
    report = classification_report(data.labels, y_true, probabilities)
    report["predicts"] = majority
    return report


def zero_shot_report(config: TrainConfig, data: TrainData) -> dict[str, Any]:
    """The base model before any training, used as a sentence encoder: each test text gets the
    label whose name it is most similar to (``zero_shot.ZeroShotClassifier``, which is also the
    ``base`` model reference)."""
    device, use_bf16 = pick_device(config.device, config.precision)
    model, tokenizer = ZeroShotClassifier.build(
        config.base_model, data.labels, config.max_length_tokens
    )
    model = model.to(device)
    test = encode(tokenizer, data.test, data.labels, config.max_length_tokens)
    probabilities = forward_sorted(
        lambda ids, mask: torch.softmax(model(ids, mask).float(), dim=-1),
        test,
        len(data.labels),
        config.eval_batch_size,
        tokenizer.pad_token_id or 0,
        device,
        use_bf16,
    )
    texts = [text for text, _ in data.test]
    return classification_report(data.labels, test.labels.numpy(), probabilities, texts)


def previous_model_report(
    previous_model_dir: str, data: TrainData, load_scorer=None
) -> dict[str, Any]:
    """An earlier run's model scored on this run's test rows (with today's labels), so the gain
    between two runs is measured on the same rows: accuracy and macro-F1 over this run's
    classes (a class the earlier model lacks is never right for it)."""
    from sklearn.metrics import f1_score

    if load_scorer is None:
        from devmode.models.scorers import load_scorer
    truth = [label for _, label in data.test]
    predicted = load_scorer(previous_model_dir).score([text for text, _ in data.test]).labels
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "macro_f1": float(
            f1_score(truth, predicted, labels=data.labels, average="macro", zero_division=0)
        ),
        "n": len(truth),
    }
