"""Fast batch inference: labels and class probabilities for many texts, from a saved classifier.

    scorer = load_full("devmode_files/models/run-3")        # or any Hugging Face classifier folder
    scores = scorer.score(headlines, on_progress=print)     # Scores(labels, probabilities, ...)

``scorers.load_scorer`` is what callers use: it picks this full-precision scorer or the int8 one
(``quantized.py``). Either loads a devmode classifier (encoder + pooling + head, saved by a
training run) or a folder that ``AutoModelForSequenceClassification`` reads (FinBERT and the
like); both predict through the one engine, ``classifier.forward_batches``.

Why it is fast: every text is tokenized in one call; texts are sorted by length and cut into
batches by a token budget, so short headlines go in batches of hundreds with almost no padding;
no gradients are kept (``torch.inference_mode``); on CUDA the forward pass runs in bf16; on the
CPU torch uses every core. Results come back in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from devmode.environment import usable_cpus
from devmode.models.base_models import InvalidBaseModel
from devmode.models.classifier import (
    MODEL_CARD,
    WEIGHTS_DTYPE,
    Encoded,
    forward_batches,
    load_classifier,
    load_tokenizer,
    pick_device,
    quiet_transformers,
    token_budget_batches,
)

# Tokens per batch (rows x padded length). Large enough to keep the cores or the GPU busy,
# small enough for activations to stay in memory.
CPU_TOKENS_PER_BATCH = 8_192
GPU_TOKENS_PER_BATCH = 262_144


@dataclass
class Scores:
    """Predictions for a list of texts, in its order."""

    labels: list[str]  # the predicted label of each text
    probabilities: np.ndarray  # shape (texts, classes), rows sum to 1
    label_names: list[str]  # the classes, in the probabilities' column order


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
        use_bf16: bool = False,
        temperature: float = 1.0,
    ):
        self.model = model.to(device).eval()
        self.temperature = temperature  # the logits are divided by it: calibration.py
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.device = device
        self.use_bf16 = use_bf16
        self.precision = "bf16" if use_bf16 else "fp32"
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
        probabilities = self._each(texts, self._probabilities, on_progress, should_stop)
        predicted = [
            None if np.isnan(row).any() else self.label_names[int(row.argmax())]
            for row in probabilities
        ]
        return Scores(predicted, probabilities, list(self.label_names))

    def raw_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's logits (the model's scores before its softmax and temperature), in input
        order."""
        return self._each(texts, lambda ids, mask: self.model(ids, mask).float())

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Whether each text is longer than the model reads (scoring cuts it there)."""
        ids = self.tokenizer(
            ["" if t is None else str(t) for t in texts], truncation=False, verbose=False
        )["input_ids"]
        return np.array([len(x) > self.max_length for x in ids], dtype=bool)

    def _each(self, texts, fn, on_progress=None, should_stop=None) -> np.ndarray:
        """``fn`` (a batch's ids and mask -> a row per text) over every text, through the one
        engine; rows not reached when ``should_stop`` says yes are NaN."""
        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        out = np.full((n, len(self.label_names)), np.nan, dtype=np.float32)
        if n:
            ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
            encoded = Encoded(ids, torch.zeros(n, dtype=torch.long), lengths)  # labels unused
            out = forward_batches(
                fn,
                encoded,
                len(self.label_names),
                token_budget_batches(lengths, self.tokens_per_batch),
                self.tokenizer.pad_token_id or 0,
                self.device,
                self.use_bf16,
                on_batch=on_progress,
                should_stop=should_stop,
            )
        return out

    def _probabilities(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Class probabilities of one batch, at the model's temperature."""
        logits = self.model(input_ids, attention_mask).float()
        return torch.softmax(logits / self.temperature, dim=-1)


def load_full(model_dir: str | Path, device: str = "auto", *, bf16: bool = False) -> Scorer:
    """The full-precision scorer of a devmode classifier folder, or of any
    ``AutoModelForSequenceClassification`` folder (bf16 on a CUDA GPU that has it; on a CPU
    with ``bf16``, which the precision check of ``quantized.py`` chooses where it pays)."""
    path = Path(model_dir)
    target, use_bf16 = pick_device(device if torch.cuda.is_available() else "cpu")
    use_bf16 = use_bf16 or (bf16 and target.type == "cpu")
    if target.type == "cpu":
        torch.set_num_threads(usable_cpus())
    if (path / MODEL_CARD).is_file():
        model, tokenizer, card = load_classifier(path)
        return Scorer(
            model,
            tokenizer,
            card["labels"],
            card["max_length_tokens"],
            target,
            use_bf16,
            float(card.get("temperature") or 1.0),
        )
    if not (path / "config.json").is_file():
        raise InvalidBaseModel(
            f"{path} is not a classifier folder: it has neither {MODEL_CARD} (a devmode model) nor "
            "config.json (a Hugging Face model). Pick a model from the registry, or a folder saved "
            "by save_pretrained."
        )
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(path)
    quiet_transformers()
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=WEIGHTS_DTYPE)
    id2label = model.config.id2label
    names = [str(id2label[i]) for i in range(model.config.num_labels)]
    max_length = min(512, getattr(tokenizer, "model_max_length", 512) or 512)
    return Scorer(_SequenceClassifier(model), tokenizer, names, max_length, target, use_bf16)
