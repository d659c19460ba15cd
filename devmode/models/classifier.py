"""The saved classifier: an encoder with a pooling and a linear head, how it is saved and
loaded, how texts become batches, and how it predicts. Training (``training.py``), evaluation
(``evaluation.py``), scoring (``models/inference.py``) and the registry build on this module;
none of it knows about the training loop.

    model, tokenizer, card = load_classifier("devmode_files/models/run-3")
    encoded = encode(tokenizer, [("Profit rose.", "positive")], card["labels"], max_length=128)
    probabilities = predict_probabilities(model, encoded, 256, tokenizer.pad_token_id, cpu, False)

A saved classifier is a folder: the encoder and tokenizer in Hugging Face format,
``head.safetensors`` and ``devmode_model.json`` (labels, pooling, max length, the training
config).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from devmode.errors import DevmodeError
from devmode.models import calibration
from devmode.models.base_models import (
    EMBEDDED_BASE_MODEL,
    MODEL_CARD,
    InvalidBaseModel,
    resolve_base_model,
)


class UnusableDevice(DevmodeError):
    """A device or precision was asked for that this machine does not have."""


# Weights are loaded in this dtype whatever the file holds: transformers 5 otherwise keeps a
# checkpoint's own dtype (fp16 or bf16 files are common), and training needs fp32 master weights
# (bf16 comes from autocast).
WEIGHTS_DTYPE = torch.float32
# Files of a saved devmode classifier, beside the encoder's own Hugging Face files.
HEAD_WEIGHTS = "head.safetensors"
# Rows in one batch at most, however short the texts (``token_budget_batches``).
MAX_BATCH_ROWS = 4_096


# ----------------------------------------------------------------------------------------------
# Model


class TextClassifier(nn.Module):
    """A Hugging Face encoder, a pooling of its token vectors, dropout and a linear head.

    Mean pooling is how all-MiniLM-L6-v2 was trained (as a sentence encoder), so it is the
    default; ``cls`` uses the first token, as BERT's own classification head does.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int,
        pooling: str = "mean",
        dropout: float = 0.1,
        normalize: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        # the pooled vector scaled to unit length before the head (a SetFit model's head was
        # fitted on sentence-transformers' normalised embeddings)
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        # BERT's pooler (a dense layer over [CLS]) is not used by either pooling: leave it out
        # of training, or the optimizer updates it for nothing and DDP waits for its gradients
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, expand_mask: bool = False
    ) -> torch.Tensor:
        """The pooled sentence vectors. ``expand_mask``: hand the encoder its mask in the
        prepared 4-D form, which it uses as it is, with no host-side checks (what a captured or
        compiled training step needs: ``finetune/steps.py``)."""
        encoder_mask = attention_mask
        if expand_mask:
            encoder_mask = expanded_attention_mask(
                attention_mask, self.encoder.config._attn_implementation, torch.float32
            )
        hidden = self.encoder(input_ids=input_ids, attention_mask=encoder_mask).last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, expand_mask: bool = False
    ) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask, expand_mask)))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each text's token vectors, padding left out: (batch, width, size) to
    (batch, size)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def quiet_transformers() -> None:
    """No "Loading weights" bar per model load: it clutters worker logs, the CLI and tests."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# A tokenizer saved by transformers leaves one of these (transformers 5 would otherwise make an
# empty tokenizer from the model's config alone, and the model would read nothing but [UNK]).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


def load_tokenizer(source: str | Path):
    """The tokenizer of a model folder (or hub id): every load of a model goes through here, so
    a local folder that has lost its tokenizer is refused rather than read as all ``[UNK]``."""
    from transformers import AutoTokenizer

    folder = Path(source)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidBaseModel(
            f"{folder} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}). Expected "
            "a whole model folder, saved with its tokenizer."
        )
    return AutoTokenizer.from_pretrained(source)


def load_encoder(base_model: str) -> tuple[nn.Module, Any]:
    """Load a Hugging Face encoder and its tokenizer from a folder or hub id."""
    from transformers import AutoModel

    quiet_transformers()

    source = resolve_base_model(base_model)
    try:
        tokenizer = load_tokenizer(source)
        encoder = AutoModel.from_pretrained(source, dtype=WEIGHTS_DTYPE)
    except (OSError, ValueError) as e:
        raise InvalidBaseModel(
            f"Could not load the base model {base_model!r}: {e}. Expected a local Hugging Face "
            "model folder, or a hub id when the machine is online. Use the embedded model "
            f"({EMBEDDED_BASE_MODEL}) to work offline."
        ) from e
    return encoder, tokenizer


def save_classifier(
    model: TextClassifier,
    tokenizer,
    labels: list[str],
    settings: dict[str, Any],
    path,
    temperature: float = 1.0,
) -> None:
    """Write the classifier as a folder: the encoder and tokenizer in Hugging Face format,
    ``head.safetensors`` and ``devmode_model.json`` (labels, pooling, the settings it was
    trained with: a ``TrainConfig.to_dict()``, and the temperature its scores are divided by
    before the softmax: ``calibration.py``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
        path / HEAD_WEIGHTS,
    )
    card = {
        "format": 1,
        "labels": labels,
        "pooling": model.pooling,
        "normalize": model.normalize,
        "max_length_tokens": settings["max_length_tokens"],
        "base_model": settings["base_model"],
        "temperature": temperature,
        "train_config": settings,
    }
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2))


def fold_temperature(model: TextClassifier, temperature: float) -> TextClassifier:
    """Divide the head's weights and bias by ``temperature`` (in place): the model's logits
    come out already scaled, for a format that carries no temperature (a Hugging Face folder,
    ONNX)."""
    with torch.no_grad():
        model.head.weight.div_(temperature)
        model.head.bias.div_(temperature)
    return model


def load_classifier(path) -> tuple[TextClassifier, Any, dict[str, Any]]:
    """Load a classifier saved by ``save_classifier``: (model in eval mode, tokenizer, card)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    path = Path(path)
    if not (path / MODEL_CARD).is_file():
        raise InvalidBaseModel(
            f"{path} is not a devmode classifier (no {MODEL_CARD}). Expected a folder saved by a "
            "finished training run; pick a model from the registry."
        )
    card = json.loads((path / MODEL_CARD).read_text())
    tokenizer = load_tokenizer(path)
    quiet_transformers()
    encoder = AutoModel.from_pretrained(path, dtype=WEIGHTS_DTYPE)
    model = TextClassifier(
        encoder,
        len(card["labels"]),
        card["pooling"],
        dropout=0.0,
        normalize=card.get("normalize", False),  # cards before few-shot mode have none
    )
    model.head.load_state_dict(load_file(path / HEAD_WEIGHTS))
    return model.eval(), tokenizer, card


def expanded_attention_mask(
    attention_mask: torch.Tensor, implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """A (batch, width) 0/1 mask in the 4-D form transformers passes on as it is (CUDA graphs).

    SDPA takes a boolean mask (True = attend); the eager implementation adds its mask to the
    attention scores, so it gets 0 or the dtype's most negative number.
    """
    keep = attention_mask[:, None, None, :].bool()
    if implementation == "sdpa":
        return keep
    return (~keep).to(dtype) * torch.finfo(dtype).min


# ----------------------------------------------------------------------------------------------
# Batches


@dataclass
class Encoded:
    """Token ids of every text (unpadded), their class ids, and lengths for bucketing."""

    ids: list[list[int]]
    labels: torch.Tensor
    lengths: np.ndarray


def encode(
    tokenizer, examples: list[tuple[str, str]], labels: list[str], max_length: int
) -> Encoded:
    """Tokenize every text once; padding happens per batch, to that batch's longest text."""
    index = {label: i for i, label in enumerate(labels)}
    ids = tokenizer([text for text, _ in examples], truncation=True, max_length=max_length)[
        "input_ids"
    ]
    return Encoded(
        ids=ids,
        labels=torch.tensor([index.get(label, -1) for _, label in examples], dtype=torch.long),
        lengths=np.array([len(x) for x in ids]),
    )


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int, device: torch.device):
    """Pad one batch to its longest text; returns (input_ids, attention_mask, labels) on device."""
    width = int(encoded.lengths[indices].max())
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    for row, i in enumerate(indices):
        input_ids[row, : encoded.lengths[i]] = torch.as_tensor(encoded.ids[i])
    attention_mask = (
        torch.arange(width)[None, :] < torch.as_tensor(encoded.lengths[indices])[:, None]
    ).long()
    labels = encoded.labels[indices]
    non_blocking = device.type == "cuda"
    if non_blocking:
        input_ids, attention_mask, labels = (
            input_ids.pin_memory(),
            attention_mask.pin_memory(),
            labels.pin_memory(),
        )
    return (
        input_ids.to(device, non_blocking=non_blocking),
        attention_mask.to(device, non_blocking=non_blocking),
        labels.to(device, non_blocking=non_blocking),
    )


# ----------------------------------------------------------------------------------------------
# Device and prediction


def pick_device(device: str = "auto", precision: str = "auto") -> tuple[torch.device, bool]:
    """(device, use bf16 autocast) for training, evaluation and scoring alike, from what was asked
    (``auto``, ``cpu``, ``cuda``; ``auto``, ``fp32``, ``bf16``) and what the machine has: ``auto``
    takes a CUDA GPU when there is one, and bf16 on it when it supports bfloat16."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UnusableDevice(
            "device=cuda was asked for, but this machine has no CUDA GPU (found "
            f"torch {torch.__version__}). Use device=auto or cpu."
        )
    chosen = torch.device(
        "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    bf16_ok = chosen.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and chosen.type == "cuda" and not bf16_ok:
        raise UnusableDevice("precision=bf16 needs a GPU with bfloat16 support; use fp32.")
    return chosen, precision == "bf16" or (precision == "auto" and bf16_ok)


def autocast(device: torch.device, use_bf16: bool, cache: bool = True):
    """bf16 autocast, or nothing. ``cache=False`` inside CUDA graphs: autocast's cache of bf16
    weight copies would otherwise be filled once at capture and go stale as the weights train."""
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices sorted by length, cut every ``batch_size`` rows (little padding in each)."""
    order = np.argsort(lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def token_budget_batches(
    lengths: np.ndarray, budget: int, max_rows: int = MAX_BATCH_ROWS
) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches whose rows x longest length stays within
    ``budget`` tokens: short headlines go hundreds at a time, long texts a few."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        # sorted ascending, so the last row of a batch is its longest
        while (
            end < len(order)
            and end - start < max_rows
            and (end + 1 - start) * lengths[order[end]] <= budget
        ):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


@torch.inference_mode()
def forward_batches(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | np.ndarray],
    encoded: Encoded,
    width: int,
    batches: Sequence[np.ndarray],
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
    *,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The one inference engine (evaluation, scoring, review and labelling all predict here):
    ``forward(input_ids, attention_mask)`` over ``batches`` of ``encoded``, rows of ``width``
    floats back in input order. ``on_batch(done, total)`` after each batch; when
    ``should_stop`` says yes, the rows not reached stay NaN."""
    out = np.full((len(encoded.lengths), width), np.nan, dtype=np.float32)
    done = 0
    for indices in batches:
        if should_stop and should_stop():
            break
        input_ids, attention_mask, _ = collate(encoded, indices, pad_id, device)
        with autocast(device, use_bf16):
            result = forward(input_ids, attention_mask)
        out[indices] = result if isinstance(result, np.ndarray) else result.float().cpu().numpy()
        done += len(indices)
        if on_batch:
            on_batch(done, len(out))
    return out


def forward_sorted(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    encoded: Encoded,
    width: int,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> np.ndarray:
    """``forward_batches`` over batches of ``batch_size`` rows sorted by length."""
    return forward_batches(
        forward,
        encoded,
        width,
        length_batches(encoded.lengths, batch_size),
        pad_id,
        device,
        use_bf16,
    )


def predict_logits(
    model: TextClassifier,
    encoded: Encoded,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> np.ndarray:
    """The head's scores before the softmax for every encoded text, in input order (what a
    temperature is fitted on: ``calibration.py``)."""
    model.eval()
    return forward_sorted(
        lambda ids, mask: model(ids, mask).float(),
        encoded,
        model.head.out_features,
        batch_size,
        pad_id,
        device,
        use_bf16,
    )


def predict_probabilities(
    model: TextClassifier,
    encoded: Encoded,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> np.ndarray:
    """Class probabilities for every encoded text, in input order (at temperature 1)."""
    logits = predict_logits(model, encoded, batch_size, pad_id, device, use_bf16)
    return calibration.softmax(logits)


def sentence_embeddings(model, encoded, batch_size, pad_id, device, use_bf16) -> np.ndarray:
    """Unit-length sentence vectors (the model's pooling), in input order."""
    return forward_sorted(
        lambda ids, mask: F.normalize(model.embed(ids, mask).float(), dim=-1),
        encoded,
        model.encoder.config.hidden_size,
        batch_size,
        pad_id,
        device,
        use_bf16,
    )


def base_vectors(base_model: str, max_length: int = 128) -> Callable[[Sequence[str]], np.ndarray]:
    """A function from texts to their unit sentence vectors (mean pooling) under the frozen base
    model, which is loaded once, here: (texts, hidden size) float32, in input order."""
    encoder, tokenizer = load_encoder(base_model)
    model = TextClassifier(encoder, 1, "mean", 0.0).eval()
    pad_id = tokenizer.pad_token_id or 0

    def vectors(texts: Sequence[str]) -> np.ndarray:
        encoded = encode(tokenizer, [(str(t), "") for t in texts], [""], max_length)
        return sentence_embeddings(model, encoded, 128, pad_id, torch.device("cpu"), False)

    return vectors
