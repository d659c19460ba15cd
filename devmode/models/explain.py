"""Which words made a model say what it said: a weight per word and class.

    explainer = Explainer(scorer)                     # any Scorer with a torch model
    (why,) = explainer.explain(["Profit fell 20% as costs rose"])
    why.label, why.top_words(3)                       # "negative", [WordWeight("fell", ...), ...]

Two methods, both over whole words (a word's sub-word pieces are taken out, or summed, together):

- ``occlusion`` (leave one word out, the default): the word is deleted from the text and the
  change in every class's probability is its weight for that class (ERASER's
  comprehensiveness, one word at a time). A text's variants go through the scorer's own engine
  with no gradients (length-sorted, token-budget batches), so every class comes at the cost of
  forward passes only, and an int8 scorer explains at int8's speed.
- ``integrated-gradients``: Integrated Gradients over the word embeddings (captum's
  ``LayerIntegratedGradients``), from a baseline where every word is padding (the special
  tokens kept), attributed to every class, summed over the embedding and over a word's pieces.

``benchmarks/explain.py`` measures both, speed and faithfulness, on PhraseBank; the default is
the one it found faster and more faithful (docs/benchmarks.md, "Explanations").

A word's ``label`` is the class it pushes toward most (for occlusion, the class its deletion
costs most: weights over classes sum to zero, so that weight is never negative); the top words
of a text are its words whose class is the predicted one, strongest first. Texts are cut at the model's length, as scoring cuts them: words past the cut
are not explained (``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from devmode.errors import DevmodeError

METHODS = ("occlusion", "integrated-gradients")
DEFAULT_METHOD = "occlusion"
# Integration steps of Integrated Gradients: benchmarks/explain.py found captum's largest
# convergence delta over 32 PhraseBank rows at 1.33 with 8 steps, 0.22 with 24, 0.013 with 48.
IG_STEPS = 48
# Sequences through the model at once (variants of a text, or integration steps).
MAX_BATCH = 256


class CannotExplain(DevmodeError):
    """The model cannot be explained (no torch form, no word embeddings, a slow tokenizer)."""


@dataclass(frozen=True)
class WordWeight:
    word: str
    start: int  # where the word is in the text (characters)
    end: int
    label: str  # the class the word pushes toward most
    weight: float  # its weight for that class: larger is more for it

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "weight": round(self.weight, 4), "class": self.label}


@dataclass(frozen=True)
class Explanation:
    text: str
    label: str
    probabilities: dict[str, float]
    words: list[WordWeight]  # in text order
    for_label: list[float] = field(repr=False)  # each word's weight for the predicted label
    truncated: bool = False  # words past the model's length are not explained
    note: str | None = None  # why there are no words to show, when there are none

    def top_words(self, n: int) -> list[WordWeight]:
        """The words that push most toward the predicted label (whose class it is), strongest
        first."""
        mine = [w for w in self.words if w.label == self.label and w.weight > 0]
        return sorted(mine, key=lambda w: -w.weight)[:n]

    def top_word_texts(self, n: int) -> list[str]:
        return [w.word for w in self.top_words(n)]


@dataclass(frozen=True)
class _Words:
    """A text's tokens and which token positions make each word."""

    ids: list[int]
    spans: list[tuple[int, int]]  # each word's characters
    positions: list[list[int]]  # each word's token positions
    truncated: bool


class Explainer:
    """Explains the predictions of ``scorer`` (a ``Scorer``: its torch model, tokenizer, labels
    and length), on its device."""

    def __init__(self, scorer, method: str = DEFAULT_METHOD, steps: int = IG_STEPS):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        model = getattr(scorer, "model", None)
        if method != "occlusion" and not isinstance(model, nn.Module):
            raise CannotExplain(
                "Integrated Gradients needs the model's torch form (this is an int8 ONNX "
                "scorer); explain it from its full-precision folder, or by occlusion."
            )
        self.scorer = scorer
        self.model = model
        self.tokenizer = scorer.tokenizer
        self.labels = list(scorer.label_names)
        self.max_length = scorer.max_length
        self.device = scorer.device
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.method = method
        self.steps = steps
        self.last_delta: float | None = None  # IG's largest convergence delta, last call

    def explain(self, texts: Sequence[str]) -> list[Explanation]:
        """An explanation of each text, in order. An empty text, or one with no word the model
        reads, gets no words and a ``note`` that says why (the others are explained)."""
        texts = [str(t) for t in texts]
        words = [self._words(t) for t in texts]
        if self.method == "occlusion":
            weights = self._occlusion(texts, words)
        else:
            weights = self._integrated(words)
        return [
            self._explanation(str(t), w, p, a)
            for t, w, (p, a) in zip(texts, words, weights, strict=True)
        ]

    def without_words(self, cases: Sequence[tuple[str, set[int]]]) -> np.ndarray:
        """The class probabilities of each text with some of its words deleted (indexes into
        its explanation's ``words``): how a deletion test (ERASER) reads a model."""
        edited = []
        for text, drop in cases:
            spans = self._words(str(text)).spans
            edited.append(_deleted(str(text), [spans[i] for i in sorted(drop)]))
        return self.scorer.score(edited).probabilities

    # ------------------------------------------------------------------------------------------

    def _words(self, text: str) -> _Words:
        enc = self.tokenizer(
            text, truncation=True, max_length=self.max_length, return_offsets_mapping=True
        )
        by_word: dict[int, list[int]] = {}
        if not getattr(enc, "is_fast", False):
            raise CannotExplain(
                "Explanations need the model's fast tokenizer (tokenizer.json), which this model "
                "folder lacks; save the tokenizer with transformers and try again."
            )
        for position, word in enumerate(enc.word_ids()):
            if word is not None:
                by_word.setdefault(word, []).append(position)
        positions = [by_word[w] for w in sorted(by_word)]
        offsets = enc["offset_mapping"]
        spans = [(offsets[p[0]][0], offsets[p[-1]][1]) for p in positions]
        if not positions:
            return _Words(list(enc["input_ids"]), [], [], False)
        cut = len(enc["input_ids"]) >= self.max_length and spans[-1][1] < len(text.rstrip())
        return _Words(list(enc["input_ids"]), spans, positions, cut)

    def _pad(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, x in enumerate(batch):
            ids[row, : len(x)] = torch.as_tensor(x)
            mask[row, : len(x)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _occlusion(
        self, texts: list[str], words: list[_Words]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, weights words x classes) of each text: each word deleted in turn.
        The texts and their variants go through the scorer's own engine together (sorted by
        length, batched by tokens), so an int8 scorer explains at int8's speed."""
        batch, owners = [], []
        for text, w in zip(texts, words, strict=True):
            batch.append(text)
            batch += [_deleted(text, [span]) for span in w.spans]
            owners.append(len(w.spans) + 1)
        probabilities = self.scorer.score(batch).probabilities
        out, at = [], 0
        for n in owners:
            whole, without = probabilities[at], probabilities[at + 1 : at + n]
            out.append((whole, whole[None, :] - without))
            at += n
        return out

    def _integrated(self, words: list[_Words]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, weights words x classes) by Integrated Gradients over the word
        embeddings, for every class: the texts x classes rows go through captum together."""
        from captum.attr import LayerIntegratedGradients

        model, temperature = self.model, self.scorer.temperature

        def probabilities(ids, mask):  # as the scorer gives them: at the model's temperature
            return torch.softmax(model(ids, mask).float() / temperature, dim=-1)

        ig = LayerIntegratedGradients(probabilities, _input_embeddings(model))
        n_classes = len(self.labels)
        ids, mask = self._pad([w.ids for w in words])
        baseline = ids.clone()
        for row, w in enumerate(words):
            for positions in w.positions:
                baseline[row, positions] = self.pad_id
        with torch.inference_mode():
            whole = probabilities(ids, mask).cpu().numpy()
        attributions, delta = ig.attribute(
            ids.repeat_interleave(n_classes, dim=0),
            baselines=baseline.repeat_interleave(n_classes, dim=0),
            additional_forward_args=(mask.repeat_interleave(n_classes, dim=0),),
            target=list(range(n_classes)) * len(words),
            n_steps=self.steps,
            internal_batch_size=MAX_BATCH,
            return_convergence_delta=True,
        )
        self.last_delta = float(delta.abs().max())
        per_token = attributions.sum(-1).detach().cpu().numpy().reshape(len(words), n_classes, -1)
        return [
            (
                whole[i],
                np.array([per_token[i][:, p].sum(-1) for p in w.positions]).reshape(
                    len(w.positions), n_classes
                ),
            )
            for i, w in enumerate(words)
        ]

    def _explanation(
        self, text: str, w: _Words, probabilities: np.ndarray, weights: np.ndarray
    ) -> Explanation:
        predicted = int(probabilities.argmax())
        strongest = weights.argmax(axis=1) if len(weights) else []
        note = None
        if not w.positions:
            note = (
                "The text is empty."
                if not text.strip()
                else "The model reads no word in this text (only spaces, invisible characters or "
                "symbols it does not know), so no word can be weighed."
            )
        word_weights = [
            WordWeight(
                text[start:end],
                start,
                end,
                self.labels[int(c)],
                float(weights[i, c]),
            )
            for i, ((start, end), c) in enumerate(zip(w.spans, strongest, strict=True))
        ]
        return Explanation(
            text,
            self.labels[predicted],
            {label: float(p) for label, p in zip(self.labels, probabilities, strict=True)},
            word_weights,
            [float(x) for x in weights[:, predicted]] if len(weights) else [],
            w.truncated,
            note,
        )


def _input_embeddings(model: nn.Module) -> nn.Module:
    """The word-embedding layer of a devmode classifier, the zero-shot base model or a wrapped
    Hugging Face model."""
    for candidate in (model, getattr(model, "encoder", None), getattr(model, "model", None)):
        if candidate is not None and hasattr(candidate, "get_input_embeddings"):
            return candidate.get_input_embeddings()
    raise CannotExplain("This model has no word embeddings to attribute to.")


def _deleted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the characters of ``spans`` (in order, not overlapping)."""
    parts, at = [], 0
    for start, end in spans:
        parts.append(text[at:start])
        at = end
    parts.append(text[at:])
    return "".join(parts)
