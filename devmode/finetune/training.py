"""The fine-tuning loop for text classification (sentiment, topic, any label), on CUDA or the CPU.

    $ python -m devmode train phrasebank --epochs 5

    data = TrainData.from_rows(rows)
    result = train(TrainConfig(epochs=3), data, output_dir="models/1", on_progress=print)

Knows nothing of Streamlit or SQLite: rows in, a saved model and a report out, progress through
a callback. ``train`` reads top to bottom (nanoGPT style): seed, device, model, batches,
optimizer, resume; then per step: learning rate, forward, backward, (adversarial step), clip,
step, log; per epoch: evaluate, keep the best, checkpoint, maybe stop early; at the end, the
best epoch is judged once on the test split and saved. How each step runs (eagerly, as CUDA
graphs, compiled) is chosen once before the loop (``steps.StepRunner``); several processes
show only at the edges (``peers``: the device, the shard of batches, DDP, who reports, agreeing
to stop). The model itself, its batches and its predictions are ``models/classifier.py``; the
reports are ``evaluation.py``.

What makes it fast is what the plain Trainer recipe does not do: every text is tokenized once,
batches are drawn from length-sorted buckets and padded only to their longest text, the GPU
never waits on a ``.item()`` outside log steps, and evaluation runs in large sorted batches.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from devmode.data.examples import TrainData, check_data
from devmode.environment import usable_cpus
from devmode.errors import DevmodeError
from devmode.finetune.checkpoints import Checkpoints, load_trainable, trainable_state
from devmode.finetune.distributed import cluster
from devmode.finetune.evaluation import classification_report, evaluate
from devmode.finetune.stability import (
    WeightAverage,
    encoder_layers,
    layer_groups,
    reinit_top_layers,
)
from devmode.finetune.steps import (
    FGM,
    StepRunner,
    TrainingStep,
    make_capturable,
    set_lr,
    why_no_graphs,
)
from devmode.models import calibration
from devmode.models.classifier import (
    Encoded,
    TextClassifier,
    encode,
    load_encoder,
    pick_device,
    predict_logits,
    save_classifier,
)
from devmode.models.config import TrainConfig

# Batches per sorted bucket: larger buckets pad less, smaller ones shuffle more.
BUCKET_BATCHES = 50
# Layers LoRA adapts, by their names in BERT-like (query, key, value, dense) and DistilBERT-like
# (q_lin, k_lin, v_lin) encoders.
LORA_TARGETS = ("query", "key", "value", "dense", "q_lin", "k_lin", "v_lin")


class OutOfMemory(DevmodeError):
    """The accelerator ran out of memory; the message says which settings would fit."""


@dataclass(frozen=True)
class Progress:
    """One report from the loop: a log step (train_loss, learning_rate, samples_per_second) or
    an evaluation (eval_loss, eval_accuracy, eval_macro_f1)."""

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
    temperature: float = 1.0  # fitted on the validation split; the saved model scores with it
    test_logits: np.ndarray | None = None  # the test split's, in its order (evaluations keep them)


@dataclass
class LoopState:
    """Where the loop stands; a checkpoint saves it, so a resumed run goes on from there."""

    epoch: int = 0  # epochs finished
    step: int = 0
    best_f1: float = -1.0  # validation macro-F1 of the best epoch so far
    best_loss: float = float("inf")  # and its validation loss (breaks ties)
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best one
    train_seconds: float = 0.0
    samples: int = 0
    validation: dict[str, Any] | None = None  # the best epoch's validation report

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> LoopState:
        """From a checkpoint (one written before a field existed gives it its default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def count(self, samples: int, seconds: float) -> None:
        """Training samples and seconds (the steps only: evaluations and checkpoints are not)."""
        self.samples += samples
        self.train_seconds += seconds

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.train_seconds, 1e-9)

    def end_epoch(self, epoch: int, step: int, validation: dict[str, Any], loss: float) -> bool:
        """Record the epoch that just ended; True when it is the best so far (keep its weights).

        Better means a higher validation macro-F1, or the same with a lower loss: ties are
        common on small validation splits, and the later, more confident model is then the
        better one.
        """
        is_best = (validation["macro_f1"], -loss) > (self.best_f1, -self.best_loss)
        if is_best:
            self.best_f1, self.best_loss, self.best_epoch = validation["macro_f1"], loss, epoch
            self.bad_epochs, self.validation = 0, validation
        else:
            self.bad_epochs += 1
        self.epoch, self.step = epoch, step
        return is_best


def train(
    config: TrainConfig,
    data: TrainData,
    *,
    output_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    soft=None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on ``data.train``; keep the epoch with the best validation
    macro-F1; report on ``data.test``; save the model to ``output_dir``.

    With ``checkpoint_dir``, the state is saved after every epoch, and a run started again with
    the same folder resumes from there. ``should_stop`` is polled after every step; when it says
    yes the result is ``cancelled`` and no model is saved (the checkpoint stays, for a resume).
    CUDA out-of-memory becomes an ``OutOfMemory`` error that says what would fit.

    ``soft`` (``distillation.SoftTargets``): train on target distributions instead of the
    labels, and on the unlabelled texts it carries too (what a distilled student does).
    """
    check_data(data)
    if config.distil_teachers or config.distil_from:
        raise ValueError(
            "This config distils from teachers: train it with distillation.train_distilled "
            "(distillation.trainer picks it), not train()."
        )
    try:
        return _train(config, data, output_dir, checkpoint_dir, on_progress, should_stop, soft)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        longest = config.max_length_tokens
        raise OutOfMemory(
            f"The GPU ran out of memory with batch_size={config.batch_size} and "
            f"max_length_tokens={longest} ({e}). Try batch_size={max(1, config.batch_size // 2)} "
            f"or max_length_tokens={max(8, longest // 2)}, or freeze layers / use LoRA."
        ) from None


def _train(config, data, output_dir, checkpoint_dir, on_progress, should_stop, soft) -> TrainResult:
    # -- seed, processes, device, model, data --------------------------------------------
    seed_everything(config.seed)
    peers = cluster()  # one process, or one of several under accelerate launch / torchrun
    device, use_bf16 = pick_device(config.device, config.precision)
    device = peers.device(device)
    if device.type == "cpu" and peers.world_size == 1:
        torch.set_num_threads(usable_cpus())
    report = on_progress if peers.is_main else (lambda p: None)
    model, tokenizer = build_model(config, len(data.labels))
    model.to(device)
    pad_id = tokenizer.pad_token_id or 0
    train_set = encode(tokenizer, data.train, data.labels, config.max_length_tokens)
    validation_set = encode(tokenizer, data.validation, data.labels, config.max_length_tokens)
    weights = None
    if config.class_weights:  # from the labels, before any soft targets replace them
        weights = class_weight_tensor(train_set, len(data.labels), device)
    if soft is not None:
        train_set = with_soft_targets(tokenizer, train_set, soft, config.max_length_tokens)
    steps_per_epoch = peers.steps_per_epoch(math.ceil(len(train_set.ids) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs

    # -- optimizer, resume from a checkpoint, and how each step runs --------------------------
    optimizer = make_optimizer(model, config, device)
    state, best_weights = LoopState(), None
    checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    if checkpoints:
        saved, best_weights = checkpoints.load(model, optimizer, device)
        state = LoopState.from_dict(saved) if saved else state
    graphs_off = why_no_graphs(config, device, peers.world_size, model.encoder, train_set)
    if graphs_off is None:
        make_capturable(optimizer, device)  # after the checkpoint, whose groups it would undo
    trained, optimizer = peers.prepare(model, optimizer)  # DDP across processes, if several
    fgm = FGM(model, config.adversarial_epsilon) if config.adversarial == "fgm" else None
    step = TrainingStep(trained, optimizer, config, weights, fgm, device, use_bf16, not graphs_off)
    runner = StepRunner.choose(step, config, train_set, pad_id, steps_per_epoch, graphs_off)
    window = LogWindow(runner.loss_sum)
    averaging, average = None, None
    if config.first_averaged_epoch:  # the saved model is then the average of the last epochs
        averaging = WeightAverage(config.first_averaged_epoch)
        average = checkpoints.average if checkpoints else None

    # -- the loop ---------------------------------------------------------------------------
    status, step_count, loop_start = "completed", state.step, time.perf_counter()
    for epoch in range(state.epoch, config.epochs):
        trained.train()
        window.start()
        batches = peers.shard(
            bucketed_batches(train_set.lengths, config.batch_size, config.seed, epoch)
        )
        runner.start_epoch(batches)
        for indices in batches:
            lr = lr_at(step_count, total_steps, config)
            set_lr(optimizer, lr)
            runner.run(indices)
            step_count += 1
            window.add(len(indices) * peers.world_size)
            is_log_step = step_count % config.log_every_steps == 0 or step_count == total_steps
            if is_log_step:
                loss, samples, seconds = window.take()  # reading the loss waits for the GPU
                state.count(samples, seconds)
                metrics = {"train_loss": loss, "learning_rate": lr}
                metrics["samples_per_second"] = state.samples_per_second
                report(Progress(step_count, total_steps, epoch + 1, metrics))
            if peers.agree_to_stop(should_stop, is_log_step):
                status = "cancelled"
                break
        wait_for_device(device)  # the epoch's steps are queued, not done, until now
        state.count(*window.take(read_loss=False)[1:])
        if status == "cancelled":
            break

        # -- evaluate, keep the best, checkpoint, maybe stop early ----------------------------
        # every process evaluates the whole validation split, so all make the same decisions
        validation, eval_loss = evaluate(
            model, validation_set, data.labels, config.eval_batch_size, pad_id, device, use_bf16
        )
        report(Progress(step_count, total_steps, epoch + 1, eval_metrics(validation, eval_loss)))
        if state.end_epoch(epoch + 1, step_count, validation, eval_loss):
            best_weights = trainable_state(model)
        if averaging:
            average = averaging.add(average, trainable_state(model), epoch + 1)
        if checkpoints and peers.is_main:  # written in the background while training goes on
            checkpoints.save(
                model, optimizer, dataclasses.asdict(state), best_weights, average=average
            )
        peers.wait()
        patience = config.early_stopping_patience  # 0 when averaging (TrainConfig checks)
        if patience and state.bad_epochs >= patience:
            break
    if checkpoints:
        checkpoints.wait()

    result = TrainResult(
        status=status,
        steps=step_count,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        validation=state.validation,
        test=None,
        labels=data.labels,
        device=device.type,
        precision="bf16" if use_bf16 else "fp32",
        train_seconds=state.train_seconds,
        samples_per_second=state.samples_per_second,
        output_dir=None,
        loop_seconds=time.perf_counter() - loop_start,
        step_graphs=runner.captured,
        notes=runner.notes,
    )
    # -- the best epoch's weights, judged once on the held-out test split, then saved ---------
    if averaging and average is not None:
        best_weights = average
    if status == "completed" and best_weights is not None and peers.is_main:
        load_trainable(model, best_weights)
        if averaging:  # the saved model is the average: judge it, not the last epoch
            result.validation, _ = evaluate(
                model, validation_set, data.labels, config.eval_batch_size, pad_id, device, use_bf16
            )
            result.best_epoch = state.epoch
            if averaging.first_epoch < state.epoch:  # a 1-epoch run keeps its one epoch
                result.notes.append(
                    f"weights averaged over epochs {averaging.first_epoch} to {state.epoch}"
                )
        judge_and_save(result, model, tokenizer, config, data, device, use_bf16, output_dir)
    peers.wait()
    return result


def judge_and_save(
    result: TrainResult, model, tokenizer, config, data, device, use_bf16, output_dir
) -> None:
    """The end of every run, fine-tune or few-shot: a temperature fitted on the validation
    split (``calibration.py``; a split it cannot be fitted on leaves 1 and says why), the
    report on the held-out test split at that temperature with its calibration before and
    after, then the model saved with its temperature (when ``output_dir`` is given)."""
    pad_id = tokenizer.pad_token_id or 0

    def logits_of(rows) -> tuple[np.ndarray, np.ndarray]:
        encoded = encode(tokenizer, rows, data.labels, config.max_length_tokens)
        found = predict_logits(model, encoded, config.eval_batch_size, pad_id, device, use_bf16)
        return found, encoded.labels.numpy()

    temperature, note = 1.0, None
    try:
        temperature = calibration.fit_temperature(*logits_of(data.validation), data.labels)
    except calibration.CalibrationNotPossible as e:
        note = str(e)
    test_logits, y_test = logits_of(data.test)
    result.test = classification_report(
        data.labels,
        y_test,
        calibration.softmax(test_logits, temperature),
        [t for t, _ in data.test],
    )
    result.test["calibration"] = {
        **calibration.calibration_report(test_logits, y_test, temperature),
        "fitted_on": len(data.validation),
        "note": note,
    }
    result.temperature, result.test_logits = temperature, test_logits
    if output_dir is not None:
        result.output_dir = save_atomically(
            model, tokenizer, data.labels, config, output_dir, temperature
        )


# ----------------------------------------------------------------------------------------------
# Helpers of the loop, in the order it uses them


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: TrainConfig, num_labels: int) -> tuple[TextClassifier, Any]:
    """The classifier to train (on the CPU) and its tokenizer: the base model's encoder with
    ``config``'s dropout, pooling, frozen parts or LoRA adapters, and a fresh head."""
    encoder, tokenizer = load_encoder(config.base_model)
    for module in encoder.modules():
        if isinstance(module, nn.Dropout):
            module.p = config.dropout
    model = TextClassifier(encoder, num_labels, config.pooling, config.dropout)
    reinit_top_layers(model, config.reinit_top_layers)
    freeze_layers(model, config)
    if config.lora:
        add_lora(model, config)
    return model, tokenizer


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
        layers = encoder_layers(model.encoder)
        for layer in layers[-config.train_top_layers :]:
            for parameter in layer.parameters():
                parameter.requires_grad = True


def add_lora(model: TextClassifier, config: TrainConfig) -> None:
    """Swap the encoder for a peft LoRA wrapper: only the adapters (and the head) train.

    Adapters go on the attention and feed-forward layers of the transformer stack only: BERT's
    pooler is a ``dense`` layer too, but neither pooling uses it, so an adapter there would
    never get a gradient (and DDP refuses parameters that get none).
    """
    from peft import LoraConfig, get_peft_model

    layers = {id(m) for m in encoder_layers(model.encoder).modules()}
    targets = sorted(
        name
        for name, module in model.encoder.named_modules()
        if isinstance(module, nn.Linear)
        and id(module) in layers
        and name.rsplit(".", 1)[-1] in LORA_TARGETS
    )
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.1, target_modules=targets
    )
    model.encoder = get_peft_model(model.encoder, lora)


def merge_lora(model: TextClassifier) -> None:
    """Fold trained adapters back into plain weights, so the saved model needs no peft."""
    if hasattr(model.encoder, "merge_and_unload"):
        model.encoder = model.encoder.merge_and_unload()


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


def make_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD with momentum; no weight decay on biases and LayerNorms,
    and with ``layer_lr_decay`` a group per layer at its own share of the rate. For CUDA graphs,
    ``make_capturable`` then turns it capturable."""
    groups = layer_groups(model, config.weight_decay, config.layer_lr_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda")


def with_soft_targets(tokenizer, train_set: Encoded, soft, max_length: int) -> Encoded:
    """The training texts with their target distributions as labels (``F.cross_entropy`` takes
    probabilities as well as class ids), and the unlabelled texts after them with theirs."""
    extra = []
    if len(soft.texts):
        extra = tokenizer(list(soft.texts), truncation=True, max_length=max_length)["input_ids"]
    targets = np.concatenate([soft.train, soft.unlabelled.reshape(len(extra), soft.train.shape[1])])
    return Encoded(
        ids=list(train_set.ids) + list(extra),
        labels=torch.tensor(targets, dtype=torch.float32),
        lengths=np.concatenate([train_set.lengths, np.array([len(x) for x in extra], dtype=int)]),
    )


def class_weight_tensor(encoded: Encoded, num_labels: int, device: torch.device) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that the average example weighs 1."""
    counts = torch.bincount(encoded.labels, minlength=num_labels).float().clamp(min=1)
    return (counts.sum() / (num_labels * counts)).to(device)


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


class LogWindow:
    """The steps since the last report: their summed loss stays on the device (reading it makes
    the host wait for the GPU, so only log steps do), their samples, and when they began."""

    def __init__(self, loss: torch.Tensor):
        self.loss = loss
        self.start()

    def start(self) -> None:
        self.loss.zero_()
        self.steps = self.samples = 0
        self.since = time.perf_counter()

    def add(self, samples: int) -> None:
        self.steps += 1
        self.samples += samples

    def take(self, read_loss: bool = True) -> tuple[float | None, int, float]:
        """(mean loss, samples, seconds) of the window, which then starts over; the loss is
        read only when asked (it waits for the GPU)."""
        loss = self.loss.item() / self.steps if read_loss and self.steps else None
        taken = (loss, self.samples, time.perf_counter() - self.since)
        self.start()
        return taken


def eval_metrics(validation: dict[str, Any], loss: float) -> dict[str, float]:
    """What an evaluation reports to ``on_progress``."""
    return {
        "eval_loss": loss,
        "eval_accuracy": validation["accuracy"],
        "eval_macro_f1": validation["macro_f1"],
    }


def wait_for_device(device: torch.device) -> None:
    """Wait until the queued steps are done (a CUDA device runs them asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def save_atomically(
    model: TextClassifier, tokenizer, labels, config, output_dir, temperature: float = 1.0
) -> str:
    """Save the classifier (adapters merged) under a temporary name, then rename it: a model
    folder is complete or absent, never half-written."""
    merge_lora(model)
    tmp = Path(str(output_dir) + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_classifier(model, tokenizer, labels, config.to_dict(), tmp, temperature)
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    return str(output_dir)
