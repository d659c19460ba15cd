"""What decides a fine-tuning run: ``TrainConfig``, each setting with its default, bounds,
choices and help, and the base model it starts from.

    config = TrainConfig(epochs=3, learning_rate=5e-5)   # InvalidConfig if a value cannot work
    TrainConfig.spec("learning_rate").help                # the --learning-rate help, the form's tooltip

The CLI's ``train`` options and the Fine-tune page's form are made from these specs; nothing
restates a bound. The dataset is not a setting: a run pins its dataset, its file hash and its
split seed (``runs.create_run``).
"""

from __future__ import annotations

from dataclasses import dataclass

from devmode.errors import DevmodeError
from devmode.models.base_models import EMBEDDED_BASE_MODEL
from devmode.specs import Settings, setting

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
FREEZE_MODES = ("none", "top_layers", "head_only")
POOLINGS = ("mean", "cls")
ADVERSARIAL = ("none", "fgm")
# fine-tune: the encoder and a head trained on the labels (training.py); few-shot: SetFit's
# contrastive recipe for a handful of rows per class (few_shot.py)
METHODS = ("fine-tune", "few-shot")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# Sections of the Fine-tune page's form; settings without one are shown first, outside them.
OPTIMIZER = "Optimizer and schedule"
REGULARISATION = "Regularisation and robustness"
WHAT_TO_TRAIN = "What to train"
HARDWARE = "Hardware and logging"
DISTILLATION = "Distillation"


class InvalidConfig(DevmodeError):
    """A training setting that cannot work; the message names the field and a value that would."""


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything that decides a fine-tuning run; saved with the run and inside its model.

    Units are in the names. Validated when built (from a form, the CLI or an imported archive);
    a run's stored config is read back with ``from_stored``, without checking it again.
    """

    error = InvalidConfig

    base_model: str = setting(
        EMBEDDED_BASE_MODEL,
        "The embedded all-MiniLM-L6-v2, a local Hugging Face model folder, or a hub id (online "
        "only).",
        label="Base model",
    )
    method: str = setting(
        "fine-tune",
        "fine-tune: train the encoder and a head on the labels (hundreds of rows or more). "
        "few-shot: SetFit, for a handful of rows per class (under about 64): the encoder "
        "learns from pairs of texts, then a logistic regression; it uses SetFit's own epochs, "
        "learning rate and batch size, and this form's seed, device and maximum length.",
        choices=METHODS,
        label="Method",
    )
    epochs: int = setting(5, "Passes over the training split.", minimum=1, maximum=1000)
    batch_size: int = setting(32, "Texts per training step.", minimum=1, maximum=65536)
    learning_rate: float = setting(
        1e-4, "Peak, reached after warmup.", above=0, below=1, number_format="%.0e"
    )
    optimizer: str = setting(
        "adamw",
        "AdamW (fused on CUDA) or SGD with momentum.",
        choices=OPTIMIZERS,
        section=OPTIMIZER,
    )
    momentum: float = setting(
        0.9, "SGD only.", minimum=0, below=1, label="Momentum (SGD)", section=OPTIMIZER
    )
    schedule: str = setting(
        "linear", "How the learning rate decays after warmup.", choices=SCHEDULES, section=OPTIMIZER
    )
    warmup_fraction: float = setting(
        0.1, "Share of all steps spent warming up.", minimum=0, below=1, section=OPTIMIZER
    )
    weight_decay: float = setting(
        0.01,
        "Decoupled weight decay (not on biases and LayerNorms).",
        minimum=0,
        below=1,
        section=OPTIMIZER,
    )
    dropout: float = setting(
        0.1,
        "In the encoder and before the classification head.",
        minimum=0,
        below=1,
        section=REGULARISATION,
    )
    max_grad_norm: float = setting(
        1.0,
        "Clip the gradients' norm to this; 0 turns clipping off.",
        minimum=0,
        label="Gradient clipping (0 = off)",
        section=OPTIMIZER,
    )
    early_stopping_patience: int = setting(
        0,
        "Stop when validation macro-F1 has not improved for this many epochs (0 = off); the best "
        "epoch is kept. Needs average_last_epochs=0.",
        minimum=0,
        example=2,
        label="Early stopping patience (epochs, 0 = off)",
        section=REGULARISATION,
        stored_before=2,  # the default until 2026-12-07, when averaging became the default
    )
    # Word embeddings stay as pre-trained (all-MiniLM-L6-v2: 11.7M of its 22.7M parameters): the
    # optimizer does half the work, and words absent from the training split keep their meaning.
    freeze_embeddings: bool = setting(
        True,
        "Half of all-MiniLM-L6-v2's weights: training is faster and unseen words keep their "
        "meaning.",
        label="Keep word embeddings fixed",
        section=WHAT_TO_TRAIN,
    )
    freeze: str = setting(
        "none",
        "none: train all; top_layers: only the top N layers and the head; head_only.",
        choices=FREEZE_MODES,
        section=WHAT_TO_TRAIN,
    )
    train_top_layers: int = setting(
        2,
        "With freeze=top_layers: how many of the top layers train.",
        minimum=1,
        label="Top layers to train",
        section=WHAT_TO_TRAIN,
    )
    lora: bool = setting(
        False,
        "Train small low-rank adapters (peft) instead of the encoder's weights.",
        label="LoRA adapters (peft)",
        section=WHAT_TO_TRAIN,
    )
    lora_rank: int = setting(
        8,
        "Rank of each adapter.",
        minimum=1,
        maximum=1024,
        label="LoRA rank",
        section=WHAT_TO_TRAIN,
    )
    lora_alpha: int = setting(
        16,
        "Adapter scaling (alpha / rank).",
        minimum=1,
        label="LoRA alpha",
        section=WHAT_TO_TRAIN,
    )
    adversarial: str = setting(
        "none",
        "fgm: perturb the word embeddings along the gradient each step.",
        choices=ADVERSARIAL,
        label="Adversarial training",
        section=REGULARISATION,
    )
    adversarial_epsilon: float = setting(
        1.0, "Size of the FGM perturbation.", above=0, section=REGULARISATION
    )
    class_weights: bool = setting(
        False,
        "Weight the loss by inverse class frequency.",
        label="Class weights (for imbalance)",
        section=REGULARISATION,
    )
    label_smoothing: float = setting(
        0.0,
        "Spread this share of each target over the other classes.",
        minimum=0,
        below=1,
        example=0.1,
        section=REGULARISATION,
    )
    # Levers that narrow the spread between seeds (issue 30; measured in docs/benchmarks.md).
    layer_lr_decay: float = setting(
        0.9,
        "Layer-wise learning-rate decay: each encoder layer learns at this times the rate of the "
        "one above it, the head at the full rate (1 = off; 0.8-0.95 is usual).",
        above=0,
        maximum=1,
        example=0.9,
        label="Layer-wise LR decay (1 = off)",
        section=OPTIMIZER,
        stored_before=1.0,  # the default from 2026-12-07 (issue 30); off before
    )
    reinit_top_layers: int = setting(
        0,
        "Start the top N encoder layers from fresh weights (their pre-training is the least "
        "general part).",
        minimum=0,
        maximum=48,
        example=1,
        label="Re-initialise top layers",
        section=WHAT_TO_TRAIN,
    )
    average_last_epochs: int = setting(
        3,
        "Save the average of the weights at the end of the last N epochs (all but the first "
        "in a shorter run) instead of the best epoch's (0 = off). Needs early_stopping_patience=0.",
        minimum=0,
        maximum=1000,
        example=2,
        label="Average the last epochs' weights",
        section=REGULARISATION,
        stored_before=0,
    )
    # Ensembles distilled into one model (finetune/distillation.py).
    distil_teachers: int = setting(
        0,
        "Train N teachers (seeds seed+1 to seed+N) on the same split, then train this model on "
        "their averaged probabilities: nearer an ensemble's accuracy at one model's scoring "
        "cost; takes N + 1 runs' time (0 = off).",
        minimum=0,
        maximum=20,
        example=3,
        label="Teachers to distil from (0 = off)",
        section=DISTILLATION,
    )
    distil_from: int = setting(
        0,
        "Distil from the fold models of this finished evaluation of the same dataset and labels "
        "(its teachers saw this run's test rows, so the run's test figures are marked as such; "
        "0 = off).",
        minimum=0,
        example=4,
        label="Distil from evaluation (id)",
        section=DISTILLATION,
    )
    distil_texts: str | None = setting(
        None,
        "A dataset whose texts the teachers label for the student too (labels ignored; texts "
        "of this run's validation and test rows are left out).",
        label="Unlabelled texts for distillation (dataset)",
        section=DISTILLATION,
    )
    pooling: str = setting(
        "mean",
        "mean: how all-MiniLM-L6-v2 was trained; cls: BERT's way.",
        choices=POOLINGS,
        section=WHAT_TO_TRAIN,
    )
    max_length_tokens: int = setting(
        128, "Longer texts are truncated.", minimum=8, maximum=8192, label="Max length (tokens)"
    )
    eval_batch_size: int = setting(256, "Texts per evaluation batch.", minimum=1, section=HARDWARE)
    log_every_steps: int = setting(
        10,
        "Report loss, learning rate and speed every this many steps.",
        minimum=1,
        label="Log every (steps)",
        section=HARDWARE,
    )
    seed: int = setting(
        42, "Seeds the initial weights, dropout and the batch order.", minimum=0, section=HARDWARE
    )
    device: str = setting(
        "auto", "auto: a CUDA GPU when there is one.", choices=DEVICES, section=HARDWARE
    )
    precision: str = setting(
        "auto", "auto: bf16 on CUDA, fp32 on the CPU.", choices=PRECISIONS, section=HARDWARE
    )
    # Replay each training step as a CUDA graph (CUDA, AdamW, one process): the same arithmetic
    # without the per-kernel launch cost that leaves a GPU idle on a model this small. Off until
    # it has been measured on a GPU (its body is checked on the CPU: tests/finetune/test_step_graphs.py).
    cuda_graphs: bool = setting(
        False,
        "Replay each step as one CUDA graph (GPU, AdamW): less launch overhead. Not yet measured "
        "on a GPU.",
        label="CUDA graphs",
        section=HARDWARE,
    )

    # The library's way to the same end: torch.compile of the forward pass and loss (so of the
    # backward too), in reduce-overhead mode on CUDA (CUDA graphs made by PyTorch). On 2 CPU
    # cores it took 151 s to compile all-MiniLM-L6-v2's step and then ran slower than eager
    # (26 against 32 samples/s), so it is off; benchmarks/gpu_proof.sh measures it on a GPU.
    compile_step: bool = setting(
        False,
        "Compile the training step with torch.compile (reduce-overhead on a GPU). Compiling "
        "takes minutes on a CPU.",
        label="torch.compile the step",
        section=HARDWARE,
    )

    @property
    def first_averaged_epoch(self) -> int | None:
        """The first epoch (1-based) whose weights the saved average holds; None when averaging
        is off. A run of ``average_last_epochs`` or fewer epochs averages all but its first,
        whose weights are still far from the data (a 1-epoch run keeps its own)."""
        if not self.average_last_epochs:
            return None
        return max(min(2, self.epochs), self.epochs - self.average_last_epochs + 1)

    def check_together(self) -> None:
        if self.method == "few-shot":
            only_fine_tune = (
                "lora",
                "cuda_graphs",
                "compile_step",
                "reinit_top_layers",
                "distil_teachers",
            )
            clashing = [n for n in only_fine_tune if getattr(self, n)]
            # the fine-tune recipe's defaults do not clash; a value chosen for few-shot does
            for name, off in (("layer_lr_decay", 1.0), ("average_last_epochs", 0)):
                if getattr(self, name) not in (off, self.spec(name).default):
                    clashing.append(name)
            if self.distil_from:
                clashing.append("distil_from")
            if clashing:
                raise InvalidConfig(
                    f"method='few-shot' trains with SetFit's own loop; found {', '.join(clashing)} "
                    "on, which only the fine-tune loop has. Turn them off, or use "
                    "method='fine-tune'."
                )
        if self.method == "fine-tune" and self.early_stopping_patience and self.average_last_epochs:
            raise InvalidConfig(
                f"early_stopping_patience={self.early_stopping_patience} stops at the best epoch, "
                f"but average_last_epochs={self.average_last_epochs} keeps the average of the "
                "last epochs, which needs every epoch: found both on. Set average_last_epochs=0 "
                "to stop early, or early_stopping_patience=0 to average."
            )
        if self.cuda_graphs and self.compile_step:
            raise InvalidConfig(
                "cuda_graphs and compile_step are two ways of replaying the training step; found "
                "both on. Use one of them."
            )
        if self.distil_teachers and self.distil_from:
            raise InvalidConfig(
                f"distil_teachers={self.distil_teachers} trains teachers and distil_from="
                f"{self.distil_from} takes an evaluation's: found both. Use one of them."
            )
        steps_replayed = [n for n in ("cuda_graphs", "compile_step") if getattr(self, n)]
        if (self.distil_teachers or self.distil_from) and steps_replayed:
            raise InvalidConfig(
                f"Distillation trains on target distributions, which {steps_replayed[0]} does "
                "not replay; found both on. Turn it off for a distilled run."
            )
        if self.distil_texts and not (self.distil_teachers or self.distil_from):
            raise InvalidConfig(
                f"distil_texts={self.distil_texts!r} gives texts for teachers to label, but no "
                "teachers are set. Set distil_teachers (e.g. 3) or distil_from too."
            )
        frozen = self.freeze == "head_only" or self.lora
        if self.freeze == "top_layers":
            frozen = self.reinit_top_layers > self.train_top_layers
        if self.reinit_top_layers and frozen:
            raise InvalidConfig(
                "reinit_top_layers starts layers from fresh weights, so they must train; found "
                f"reinit_top_layers={self.reinit_top_layers} with freeze={self.freeze!r}, "
                f"train_top_layers={self.train_top_layers}, lora={self.lora}. Use freeze=none "
                "(or top_layers covering them) without LoRA."
            )
        if self.lora and self.freeze != "none":
            raise InvalidConfig(
                "lora already freezes the encoder and trains small adapters; found lora=True with "
                f"freeze={self.freeze!r}. Use one or the other."
            )
