"""Fast batch inference: labels and class probabilities for many texts, from a saved classifier.

    scorer = load_scorer("devmode_files/models/run-3")      # or any Hugging Face classifier folder
    scores = scorer.score(headlines, on_progress=print)     # Scores(labels, probabilities, ...)

One function serves the Monitor page, the CLI and any later API. It loads either a devmode
classifier (encoder + pooling + head, saved by a training run) or a folder that
``AutoModelForSequenceClassification`` reads (FinBERT and the like).

Why it is fast: every text is tokenized in one call; texts are sorted by length and cut into
batches by a token budget, so short headlines go in batches of hundreds with almost no padding;
no gradients are kept (``torch.inference_mode``); on CUDA the forward pass runs in bf16; on the
CPU torch uses every core. Results come back in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from devmode.environment import usable_cpus
from devmode.finetune.classifier import (
    MODEL_CARD,
    WEIGHTS_DTYPE,
    Encoded,
    collate,
    load_classifier,
    quiet_transformers,
)
from devmode.finetune.config import InvalidBaseModel

# Tokens per batch (rows x padded length). Large enough to keep the cores or the GPU busy,
# small enough for activations to stay in memory.
CPU_TOKENS_PER_BATCH = 8_192
GPU_TOKENS_PER_BATCH = 262_144
MAX_BATCH_ROWS = 4_096


@dataclass
class Scores:
    """Predictions for a list of texts, in its order."""

    labels: list[str]  # the predicted label of each text
    probabilities: np.ndarray  # shape (texts, classes), rows sum to 1
    label_names: list[str]  # the classes, in the probabilities' column order

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per text: ``{"label": "negative", "p_negative": 0.91, ...}``."""
        return [
            {
                "label": label,
                **{f"p_{name}": float(p) for name, p in zip(self.label_names, row, strict=True)},
            }
            for label, row in zip(self.labels, self.probabilities, strict=True)
        ]


class _SequenceClassifier(nn.Module):
    """Adapts a Hugging Face ``...ForSequenceClassification`` model to (ids, mask) -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class Scorer:
    """A loaded classifier, ready to score; build one with ``load_scorer``."""

    precision = "fp32"  # what the numbers are computed in: fp32, bf16 (CUDA), int8 (quantized.py)

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        label_names: list[str],
        max_length: int,
        device: torch.device,
    ):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.device = device
        self.use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.precision = "bf16" if self.use_bf16 else "fp32"
        self.tokens_per_batch = (
            GPU_TOKENS_PER_BATCH if device.type == "cuda" else CPU_TOKENS_PER_BATCH
        )

    def score(
        self,
        texts: Sequence[str],
        *,
        on_progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Scores:
        """Score ``texts``; ``on_progress(done, total)`` after each batch. Blank texts score too
        (they get whatever the model says about an empty string). If ``should_stop`` says yes,
        the rows not reached yet have NaN probabilities and the label ``None``."""
        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        probabilities = np.full((n, len(self.label_names)), np.nan, dtype=np.float32)
        if n:
            ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
            encoded = Encoded(ids, torch.zeros(n, dtype=torch.long), lengths)  # labels unused
            order = np.argsort(lengths, kind="stable")
            pad_id = self.tokenizer.pad_token_id or 0
            done = 0
            for batch in _token_budget_batches(order, lengths, self.tokens_per_batch):
                if should_stop and should_stop():
                    break
                probabilities[batch] = self._forward(encoded, batch, pad_id)
                done += len(batch)
                if on_progress:
                    on_progress(done, n)
        predicted = [
            None if np.isnan(row).any() else self.label_names[int(row.argmax())]
            for row in probabilities
        ]
        return Scores(predicted, probabilities, list(self.label_names))

    @torch.inference_mode()
    def _forward(self, encoded: Encoded, batch, pad_id) -> np.ndarray:
        """Class probabilities of the rows ``batch`` of ``encoded``."""
        input_ids, attention_mask, _ = collate(encoded, batch, pad_id, self.device)
        if self.use_bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = self.model(input_ids, attention_mask)
        else:
            logits = self.model(input_ids, attention_mask)
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def _token_budget_batches(order: np.ndarray, lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Cut length-sorted indices into batches whose rows x longest length stays within ``budget``."""
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        # sorted ascending, so the last row of a batch is its longest
        while (
            end < len(order)
            and end - start < MAX_BATCH_ROWS
            and (end + 1 - start) * lengths[order[end]] <= budget
        ):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def load_scorer(model_dir: str | Path, device: str = "auto", precision: str = "auto") -> Scorer:
    """Load a devmode classifier folder, or any ``AutoModelForSequenceClassification`` folder.

    :param precision: ``auto``: on a CPU, the model's int8 form when its check found the same
        labels as full precision on at least 99% of texts (``quantized.py``), else fp32;
        ``fp32``: never int8
    """
    path = Path(model_dir)
    target = torch.device(
        "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    if target.type == "cpu":
        torch.set_num_threads(usable_cpus())
    if target.type == "cpu" and precision == "auto":
        from devmode.monitor import int8

        card = int8.int8_card(path)
        if card and card["used"] and int8.available():
            from devmode.monitor.quantized import load_int8

            return load_int8(path)
    if (path / MODEL_CARD).is_file():
        model, tokenizer, card = load_classifier(path)
        return Scorer(model, tokenizer, card["labels"], card["max_length_tokens"], target)
    if not (path / "config.json").is_file():
        raise InvalidBaseModel(
            f"{path} is not a classifier folder: it has neither {MODEL_CARD} (a devmode model) nor "
            "config.json (a Hugging Face model). Pick a model from the registry, or a folder saved "
            "by save_pretrained."
        )
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=WEIGHTS_DTYPE)
    id2label = model.config.id2label
    names = [str(id2label[i]) for i in range(model.config.num_labels)]
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = min(512, getattr(tokenizer, "model_max_length", 512) or 512)
    return Scorer(_SequenceClassifier(model), tokenizer, names, max_length, target)
