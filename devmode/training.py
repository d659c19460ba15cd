"""Fine-tuning loop for text classification (sentiment, topic, any label), on CUDA or the CPU.

    $ python -m devmode train phrasebank --epochs 5

    data = TrainData.from_rows(train_rows, validation_rows, test_rows)
    result = train(TrainConfig("phrasebank"), data, output_dir="models/1", on_progress=print)

Knows nothing of Streamlit or SQLite: rows in, a saved model and a report out, progress through
a callback. The loop reads top to bottom (nanoGPT style): seed, model, batches, optimizer; then
per step: learning rate, forward, backward, (adversarial step), clip, step, log; per epoch:
evaluate, keep the best, checkpoint, maybe stop early.

What makes it fast is what the plain Trainer recipe does not do: every text is tokenized once,
batches are drawn from length-sorted buckets and padded only to their longest text, the GPU
never waits on a ``.item()`` outside log steps, and evaluation runs in large sorted batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from devmode.checkpoints import (
    Checkpoints,
    checkpoint_position,  # noqa: F401 (re-exported)
    load_trainable,
    trainable_state,
)
from devmode.config import (
    EMBEDDED_BASE_MODEL,
    InvalidBaseModel,
    TrainConfig,
    resolve_base_model,
    usable_cpus,
)
from devmode.distributed import cluster
from devmode.errors import DevmodeError
from devmode.step_graphs import (
    MAX_DEVICE_TEXT_BYTES,
    GraphCaptureFailed,
    StepGraphs,
    expanded_attention_mask,
    graphs_supported,
)
from devmode.trainset import InvalidTrainingData, TrainData, check_data  # noqa: F401 (re-exported)

# Files of a saved devmode classifier, beside the encoder's own Hugging Face files.
MODEL_CARD = "devmode_model.json"
HEAD_WEIGHTS = "head.safetensors"
# Batches per sorted bucket: larger buckets pad less, smaller ones shuffle more.
BUCKET_BATCHES = 50


class OutOfMemory(DevmodeError):
    """The accelerator ran out of memory; the message says which settings would fit."""


# ----------------------------------------------------------------------------------------------
# Model


class TextClassifier(nn.Module):
    """A Hugging Face encoder, a pooling of its token vectors, dropout and a linear head.

    Mean pooling is how all-MiniLM-L6-v2 was trained (as a sentence encoder), so it is the
    default; ``cls`` uses the first token, as BERT's own classification head does.
    """

    def __init__(
        self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        # True when training steps are captured as CUDA graphs: the encoder then gets its mask in
        # the prepared 4-D form, which it uses as it is, with no host-side checks (step_graphs.py)
        self.expand_mask = False
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        # BERT's pooler (a dense layer over [CLS]) is not used by either pooling: leave it out
        # of training, or the optimizer updates it for nothing and DDP waits for its gradients
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoder_mask = attention_mask
        if self.expand_mask:
            encoder_mask = expanded_attention_mask(
                attention_mask, self.encoder.config._attn_implementation, torch.float32
            )
        hidden = self.encoder(input_ids=input_ids, attention_mask=encoder_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


def quiet_transformers() -> None:
    """No "Loading weights" bar per model load: it clutters worker logs, the CLI and tests."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_encoder(base_model: str) -> tuple[nn.Module, Any]:
    """Load a Hugging Face encoder and its tokenizer from a folder or hub id."""
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()

    source = resolve_base_model(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        encoder = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise InvalidBaseModel(
            f"Could not load the base model {base_model!r}: {e}. Expected a local Hugging Face "
            "model folder, or a hub id when the machine is online. Use the embedded model "
            f"({EMBEDDED_BASE_MODEL}) to work offline."
        ) from e
    return encoder, tokenizer


def save_classifier(
    model: TextClassifier, tokenizer, labels: list[str], config: TrainConfig, path
) -> None:
    """Write the classifier as a folder: the encoder and tokenizer in Hugging Face format,
    ``head.safetensors`` and ``devmode_model.json`` (labels, pooling, the training config)."""
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
        "max_length_tokens": config.max_length_tokens,
        "base_model": config.base_model,
        "train_config": config.to_dict(),
    }
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2))


def load_classifier(path) -> tuple[TextClassifier, Any, dict[str, Any]]:
    """Load a classifier saved by ``save_classifier``: (model in eval mode, tokenizer, card)."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / MODEL_CARD).is_file():
        raise InvalidBaseModel(
            f"{path} is not a devmode classifier (no {MODEL_CARD}). Expected a folder saved by a "
            "finished training run; pick a model from the registry."
        )
    card = json.loads((path / MODEL_CARD).read_text())
    quiet_transformers()
    encoder = AutoModel.from_pretrained(path)
    model = TextClassifier(encoder, len(card["labels"]), card["pooling"], dropout=0.0)
    model.head.load_state_dict(load_file(path / HEAD_WEIGHTS))
    return model.eval(), AutoTokenizer.from_pretrained(path), card


def freeze_layers(model: TextClassifier, config: TrainConfig) -> None:
    """Apply ``config.freeze``: train everything, only the top N encoder layers, or the head;
    and keep the word embeddings fixed when ``config.freeze_embeddings``."""
    if config.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad = False
    if config.freeze == "none":
        return
    for parameter in model.encoder.parameters():
        parameter.requires_grad = False
    if config.freeze == "top_layers":
        layers = _encoder_layers(model.encoder)
        for layer in layers[-config.train_top_layers :]:
            for parameter in layer.parameters():
                parameter.requires_grad = True


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers (BERT: encoder.layer; DistilBERT: transformer.layer)."""
    depth = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise InvalidBaseModel(
        f"Could not find the layer stack of {type(encoder).__name__} to freeze. Use freeze=none "
        "or head_only with this model."
    )


def add_lora(model: TextClassifier, config: TrainConfig) -> None:
    """Swap the encoder for a peft LoRA wrapper: only the adapters (and the head) train."""
    from peft import LoraConfig, get_peft_model

    targets = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.encoder.named_modules()
            if isinstance(m, nn.Linear)
            and name.rsplit(".", 1)[-1]
            in ("query", "key", "value", "dense", "q_lin", "k_lin", "v_lin")
        }
    )
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.1, target_modules=targets
    )
    model.encoder = get_peft_model(model.encoder, lora)


def merge_lora(model: TextClassifier) -> None:
    """Fold trained adapters back into plain weights, so the saved model needs no peft."""
    if hasattr(model.encoder, "merge_and_unload"):
        model.encoder = model.encoder.merge_and_unload()


# ----------------------------------------------------------------------------------------------
# Batching


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


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """Shuffle, cut into buckets of ``BUCKET_BATCHES`` batches, sort each bucket by length, batch,
    and shuffle the batches. Padding drops to near zero while every epoch stays random;
    the order depends only on (seed, epoch), so a resumed run sees the same batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


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
# Evaluation


@torch.inference_mode()
@torch.inference_mode()
def _run_sorted(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    encoded: Encoded,
    width: int,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> np.ndarray:
    """``forward(input_ids, attention_mask)`` over every text in batches sorted by length (little
    padding); rows of ``width`` floats come back in input order."""
    order = np.argsort(encoded.lengths, kind="stable")
    out = np.zeros((len(order), width), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        input_ids, attention_mask, _ = collate(encoded, indices, pad_id, device)
        with _autocast(device, use_bf16):
            out[indices] = forward(input_ids, attention_mask).float().cpu().numpy()
    return out


def predict_probabilities(
    model: TextClassifier,
    encoded: Encoded,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    use_bf16: bool,
) -> np.ndarray:
    """Class probabilities for every encoded text, in input order."""
    model.eval()
    return _run_sorted(
        lambda ids, mask: torch.softmax(model(ids, mask).float(), dim=-1),
        encoded,
        model.head.out_features,
        batch_size,
        pad_id,
        device,
        use_bf16,
    )


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
    label whose name it is most similar to (cosine of mean-pooled embeddings)."""
    device, use_bf16 = pick_device(config)
    encoder, tokenizer = load_encoder(config.base_model)
    model = TextClassifier(encoder, len(data.labels), "mean", 0.0).to(device).eval()
    pad_id = tokenizer.pad_token_id or 0
    texts = [text for text, _ in data.test]
    test = encode(tokenizer, data.test, data.labels, config.max_length_tokens)
    names = encode(
        tokenizer, [(label, label) for label in data.labels], data.labels, config.max_length_tokens
    )
    text_vectors = _embeddings(model, test, config.eval_batch_size, pad_id, device, use_bf16)
    label_vectors = _embeddings(model, names, config.eval_batch_size, pad_id, device, use_bf16)
    similarity = text_vectors @ label_vectors.T
    probabilities = torch.softmax(torch.from_numpy(similarity) / 0.05, dim=-1).numpy()
    return classification_report(data.labels, test.labels.numpy(), probabilities, texts)


def _embeddings(model, encoded, batch_size, pad_id, device, use_bf16) -> np.ndarray:
    """Unit-length sentence vectors (the model's pooling), in input order."""
    return _run_sorted(
        lambda ids, mask: F.normalize(model.embed(ids, mask).float(), dim=-1),
        encoded,
        model.encoder.config.hidden_size,
        batch_size,
        pad_id,
        device,
        use_bf16,
    )


# ----------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class Progress:
    """One report from the loop: a log step (train_loss, learning_rate, samples_per_s) or an
    evaluation (eval_loss, eval_accuracy, eval_macro_f1)."""

    step: int
    total_steps: int
    epoch: int
    metrics: dict[str, float]


@dataclass
class TrainResult:
    status: str  # completed | cancelled
    steps: int
    epochs_run: int
    best_epoch: int | None
    validation: dict[str, Any] | None
    test: dict[str, Any] | None
    labels: list[str]
    device: str
    precision: str
    train_seconds: float  # forward, backward and optimizer steps only
    samples_per_second: float  # training samples per train_second
    output_dir: str | None
    loop_seconds: float = 0.0  # wall time of the epochs, with evaluation and checkpoints
    step_graphs: int = 0  # training steps captured as CUDA graphs (one per batch width)
    notes: list[str] = field(default_factory=list)  # e.g. why CUDA graphs were not used


def pick_device(config: TrainConfig) -> tuple[torch.device, bool]:
    """(device, use bf16 autocast) from the config and what the machine has."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidTrainingData(
            "device=cuda was asked for, but this machine has no CUDA GPU (found "
            f"torch {torch.__version__}). Use device=auto or cpu."
        )
    device = torch.device(
        "cuda" if config.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    if config.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidTrainingData("precision=bf16 needs a GPU with bfloat16 support; use fp32.")
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    return device, use_bf16


def _autocast(device: torch.device, use_bf16: bool, cache: bool = True):
    """bf16 autocast, or nothing. ``cache=False`` inside CUDA graphs: autocast's cache of bf16
    weight copies would otherwise be filled once at capture and go stale as the weights train."""
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warmup to ``learning_rate``, then linear or cosine decay to zero (or constant)."""
    warmup = int(config.warmup_fraction * total_steps)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    if config.schedule == "constant":
        return config.learning_rate
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    return config.learning_rate * max(0.0, 1 - progress)


def make_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD with momentum; no weight decay on biases and LayerNorms.
    For CUDA graphs, ``make_capturable`` then turns it capturable."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda")


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Let a (fused) AdamW's ``step()`` be captured in a CUDA graph: its learning rate becomes a
    tensor on the device (``set_lr`` fills it in place). Call it after ``load_state_dict``,
    which brings back the saved groups' settings."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor learning rate (CUDA graphs) is filled in place,
    since a captured step reads it from the same memory every time."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class FGM:
    """Fast Gradient Method (Miyato et al. 2017): after the normal backward pass, move the
    batch's word-embedding vectors ``epsilon`` along the loss gradient, and add the loss there.

    It perturbs the embedding layer's output through a forward hook, so it works whether the
    embedding matrix trains or is frozen (``freeze_embeddings``).
    """

    def __init__(self, model: TextClassifier, epsilon: float):
        self.epsilon = epsilon
        self.delta: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        model.encoder.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            return output + self.delta
        if torch.is_grad_enabled():
            if not output.requires_grad:
                output.requires_grad_(True)  # a frozen matrix: make its output a leaf with a .grad
            else:
                output.retain_grad()
            self.output = output
        return output

    def attack(self) -> None:
        """Call after ``loss.backward()``: the next forward pass sees perturbed embeddings."""
        grad = self.output.grad if self.output is not None else None
        if grad is not None:
            self.delta = (self.epsilon * grad / (torch.linalg.vector_norm(grad) + 1e-12)).detach()
        self.output = None

    def restore(self) -> None:
        self.delta = None


def class_weight_tensor(encoded: Encoded, num_labels: int, device: torch.device) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that the average example weighs 1."""
    counts = torch.bincount(encoded.labels, minlength=num_labels).float().clamp(min=1)
    return (counts.sum() / (num_labels * counts)).to(device)


def train(
    config: TrainConfig,
    data: TrainData,
    *,
    output_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on ``data.train``; keep the epoch with the best validation
    macro-F1; report on ``data.test``; save the model to ``output_dir``.

    With ``checkpoint_dir``, the state is saved after every epoch, and a run started again with
    the same folder resumes from there. ``should_stop`` is polled after every step; when it says
    yes the result is ``cancelled`` and no model is saved (the checkpoint stays, for a resume).
    CUDA out-of-memory becomes an ``OutOfMemory`` error that says what would fit.
    """
    check_data(data)
    try:
        return _train(config, data, output_dir, checkpoint_dir, on_progress, should_stop)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        longest = config.max_length_tokens
        raise OutOfMemory(
            f"The GPU ran out of memory with batch_size={config.batch_size} and "
            f"max_length_tokens={longest} ({e}). Try batch_size={max(1, config.batch_size // 2)} "
            f"or max_length_tokens={max(8, longest // 2)}, or freeze layers / use LoRA."
        ) from None


def _train(config, data, output_dir, checkpoint_dir, on_progress, should_stop) -> TrainResult:
    # -- setup: seed, device, model, data ---------------------------------------------------
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device, use_bf16 = pick_device(config)
    peers = cluster()  # one process, or one of several under accelerate launch / torchrun
    device = peers.device(device)
    if device.type == "cpu" and peers.world_size == 1:
        torch.set_num_threads(usable_cpus())
    report = on_progress if peers.is_main else (lambda p: None)
    encoder, tokenizer = load_encoder(config.base_model)
    _set_dropout(encoder, config.dropout)
    model = TextClassifier(encoder, len(data.labels), config.pooling, config.dropout)
    freeze_layers(model, config)
    if config.lora:
        add_lora(model, config)
    model.to(device)
    pad_id = tokenizer.pad_token_id or 0
    train_set = encode(tokenizer, data.train, data.labels, config.max_length_tokens)
    validation_set = encode(tokenizer, data.validation, data.labels, config.max_length_tokens)
    steps_per_epoch = peers.steps_per_epoch(math.ceil(len(data.train) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    notes: list[str] = []
    graphs_off = _why_no_graphs(config, device, peers.world_size, model.encoder, train_set)
    if graphs_off and config.cuda_graphs and device.type == "cuda":
        notes.append(f"CUDA graphs off: {graphs_off}")
    use_graphs = graphs_off is None
    optimizer = make_optimizer(model, config, device)
    weights = (
        class_weight_tensor(train_set, len(data.labels), device) if config.class_weights else None
    )
    fgm = FGM(model, config.adversarial_epsilon) if config.adversarial == "fgm" else None

    # -- resume from a checkpoint, if there is one ------------------------------------------
    state = {
        "epoch": 0,
        "step": 0,
        "best_f1": -1.0,
        "best_loss": float("inf"),
        "best_epoch": None,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "samples": 0,
        "validation": None,
    }
    checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    best_weights = None
    if checkpoints:
        saved_state, best_weights = checkpoints.load(model, optimizer, device)
        state = saved_state or state
    if use_graphs:
        make_capturable(optimizer, device)  # after the checkpoint, whose groups it would undo
    core = model  # the plain module: evaluated, checkpointed and saved
    model, optimizer = peers.prepare(model, optimizer)  # DDP across processes, if several
    trainable = [p for p in model.parameters() if p.requires_grad]

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits, labels, weight=weights, label_smoothing=config.label_smoothing
        )

    def run_step(input_ids, attention_mask, labels, update=True) -> torch.Tensor:
        """Forward, backward (twice with FGM) and, when ``update``, clip and step; the loss."""
        with _autocast(device, use_bf16, cache=not use_graphs):
            loss = loss_fn(model(input_ids, attention_mask).float(), labels)
        loss.backward()
        if fgm:
            fgm.attack()
            with _autocast(device, use_bf16, cache=not use_graphs):
                adversarial_loss = loss_fn(model(input_ids, attention_mask).float(), labels)
            adversarial_loss.backward()
            fgm.restore()
        if update:
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    graphs = None
    if use_graphs:
        core.expand_mask = True
        graphs = StepGraphs(
            train_set, pad_id, config.batch_size, steps_per_epoch, run_step, device, capture=True
        )
    window_loss = graphs.loss_sum if graphs else torch.zeros((), device=device)

    # -- the loop ---------------------------------------------------------------------------
    status = "completed"
    step = state["step"]
    loop_start = time.perf_counter()
    for epoch in range(state["epoch"], config.epochs):
        model.train()
        epoch_start = time.perf_counter()
        window_loss.zero_()
        window_steps = window_samples = 0
        batches = peers.shard(
            bucketed_batches(train_set.lengths, config.batch_size, config.seed, epoch)
        )
        if graphs:
            graphs.start_epoch(batches)
        for indices in batches:
            lr = lr_at(step, total_steps, config)
            set_lr(optimizer, lr)
            # AdamW makes its moments on its first step, which must not be captured (each replay
            # would zero them again): that step, and any after a failed capture, run eagerly
            replayed = False
            if graphs and optimizer.state:
                try:
                    replayed = graphs.step(indices)
                except GraphCaptureFailed as e:
                    notes.append(f"CUDA graphs off after a failed capture: {e}")
                    graphs, core.expand_mask = None, False
            if not replayed:
                input_ids, attention_mask, labels = collate(train_set, indices, pad_id, device)
                window_loss += run_step(input_ids, attention_mask, labels)
                if graphs:
                    graphs.skip()
            step += 1
            window_steps += 1
            window_samples += len(indices) * peers.world_size
            is_log_step = step % config.log_every_steps == 0 or step == total_steps
            if is_log_step:
                # .item() waits for the GPU: only on log steps
                elapsed = state["train_seconds"] + time.perf_counter() - epoch_start
                report(
                    Progress(
                        step,
                        total_steps,
                        epoch + 1,
                        {
                            "train_loss": window_loss.item() / window_steps,
                            "learning_rate": lr,
                            "samples_per_second": (state["samples"] + window_samples)
                            / max(elapsed, 1e-9),
                        },
                    )
                )
                state["samples"] += window_samples
                state["train_seconds"] = elapsed
                epoch_start = time.perf_counter()
                window_loss.zero_()
                window_steps = window_samples = 0
            # several processes must agree to stop, which costs a collective: on log steps only
            if (peers.world_size == 1 or is_log_step) and peers.any(should_stop()):
                status = "cancelled"
                break
        if device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's steps are queued, not done, until now
        state["samples"] += window_samples
        state["train_seconds"] += time.perf_counter() - epoch_start
        if status == "cancelled":
            break

        # -- evaluate, keep the best, checkpoint, maybe stop early ----------------------------
        # every process evaluates the whole validation split, so all make the same decisions
        probabilities = predict_probabilities(
            core, validation_set, config.eval_batch_size, pad_id, device, use_bf16
        )
        y_true = validation_set.labels.numpy()
        validation = classification_report(data.labels, y_true, probabilities)
        eval_loss = float(-np.log(probabilities[np.arange(len(y_true)), y_true] + 1e-12).mean())
        report(
            Progress(
                step,
                total_steps,
                epoch + 1,
                {
                    "eval_loss": eval_loss,
                    "eval_accuracy": validation["accuracy"],
                    "eval_macro_f1": validation["macro_f1"],
                },
            )
        )
        # better: a higher validation macro-F1, or the same with a lower loss (ties are common
        # on small validation splits, and the later, more confident model is then the better one)
        if (validation["macro_f1"], -eval_loss) > (
            state["best_f1"],
            -state.get("best_loss", float("inf")),
        ):
            state.update(
                best_f1=validation["macro_f1"],
                best_loss=eval_loss,
                best_epoch=epoch + 1,
                bad_epochs=0,
                validation=validation,
            )
            best_weights = trainable_state(core)
        else:
            state["bad_epochs"] += 1
        state.update(epoch=epoch + 1, step=step)
        if checkpoints and peers.is_main:
            checkpoints.save(core, optimizer, state, best_weights)  # written while training goes on
        peers.wait()
        if config.early_stopping_patience and state["bad_epochs"] >= config.early_stopping_patience:
            break
    if checkpoints:
        checkpoints.wait()

    result = TrainResult(
        status=status,
        steps=step,
        epochs_run=state["epoch"],
        best_epoch=state["best_epoch"],
        validation=state["validation"],
        test=None,
        labels=data.labels,
        device=device.type,
        precision="bf16" if use_bf16 else "fp32",
        train_seconds=state["train_seconds"],
        samples_per_second=state["samples"] / max(state["train_seconds"], 1e-9),
        output_dir=None,
        loop_seconds=time.perf_counter() - loop_start,
        step_graphs=len(graphs.graphs) if graphs else 0,
        notes=notes,
    )
    if status == "cancelled" or best_weights is None or not peers.is_main:
        peers.wait()
        return result

    # -- the best epoch's weights, judged once on the held-out test split ---------------------
    model = core
    load_trainable(model, best_weights)
    test_set = encode(tokenizer, data.test, data.labels, config.max_length_tokens)
    probabilities = predict_probabilities(
        model, test_set, config.eval_batch_size, pad_id, device, use_bf16
    )
    result.test = classification_report(
        data.labels, test_set.labels.numpy(), probabilities, [t for t, _ in data.test]
    )
    if output_dir is not None:
        merge_lora(model)
        tmp = Path(str(output_dir) + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        save_classifier(model, tokenizer, data.labels, config, tmp)
        shutil.rmtree(output_dir, ignore_errors=True)
        tmp.rename(output_dir)  # a model folder is complete or absent, never half-written
        result.output_dir = str(output_dir)
    peers.wait()
    return result


def _why_no_graphs(config, device, world_size, encoder, train_set) -> str | None:
    """None when training steps can be CUDA graphs, else the reason (kept in the run's notes)."""
    if not config.cuda_graphs:
        return "cuda_graphs is off"
    if device.type != "cuda":
        return "not on a CUDA device"
    if world_size > 1:
        return "several processes train together (DDP)"
    if config.optimizer != "adamw":
        return f"the {config.optimizer} step is not captured; use adamw"
    unsupported = graphs_supported(encoder)
    if unsupported:
        return unsupported
    if StepGraphs.device_bytes(train_set) > MAX_DEVICE_TEXT_BYTES:
        return "the padded training texts are too large to keep on the GPU"
    return None


def _set_dropout(encoder: nn.Module, p: float) -> None:
    for module in encoder.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
