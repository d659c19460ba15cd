"""Few-shot training: SetFit (the ``setfit`` library) for a handful of labelled rows per class,
saved as a devmode classifier so that the run's report, registry, scoring and export are those
of any fine-tune.

    result = train_few_shot(TrainConfig(method="few-shot"), data, output_dir="models/run-7")

SetFit first fine-tunes the sentence encoder on pairs of texts (same class: similar; different
classes: not), then fits a logistic regression on the encoder's sentence vectors. Both parts
map onto ``TextClassifier``: the encoder, its pooling (and unit-length scaling, as
sentence-transformers does), and the regression's weights as the linear head. The report is
then computed by devmode's own evaluation on the saved classifier, the same code as every run.

The recipe is SetFit's published default (20 pair draws per row, one epoch, batch 16, body
learning rate 2e-5), capped at ``MAX_PAIRS`` pairs so a large dataset sent here still ends in
minutes on a CPU: few-shot is for small data, and fine-tune wins above about 64 rows a class.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from devmode.data.examples import TrainData
from devmode.environment import usable_cpus
from devmode.finetune.evaluation import evaluate
from devmode.finetune.training import Progress, TrainResult, judge_and_save, seed_everything
from devmode.models.base_models import InvalidBaseModel, resolve_base_model
from devmode.models.classifier import TextClassifier, encode, pick_device, quiet_transformers
from devmode.models.config import POOLINGS, TrainConfig
from devmode.models.methods import check_few_shot

# Pairs are drawn from each row this many times (SetFit's num_iterations), at most MAX_PAIRS.
ITERATIONS = 20
MAX_PAIRS = 8_000
BATCH_SIZE = 16
BODY_LEARNING_RATE = 2e-5


def train_few_shot(
    config: TrainConfig,
    data: TrainData,
    *,
    output_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,  # unused: a few-shot run takes minutes
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train ``config.base_model`` with SetFit on ``data.train``; report on validation and test
    with devmode's evaluation; save a devmode classifier to ``output_dir``."""
    check_few_shot(data)
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback

    quiet_transformers()
    seed_everything(config.seed)
    device, use_bf16 = pick_device(config.device, config.precision)
    if device.type == "cpu":
        torch.set_num_threads(usable_cpus())
    index = {label: i for i, label in enumerate(data.labels)}
    train_set = Dataset.from_dict(
        {"text": [t for t, _ in data.train], "label": [index[label] for _, label in data.train]}
    )
    model = SetFitModel.from_pretrained(resolve_base_model(config.base_model), device=str(device))
    # SetFit's own max_length reaches only the classifier's fit: without this the encoder would
    # train on pairs at its own limit (256 tokens for all-MiniLM-L6-v2), whatever the run says
    model.model_body.max_seq_length = config.max_length_tokens
    pairs = min(MAX_PAIRS, ITERATIONS * 2 * len(data.train))
    total_steps = max(1, pairs // BATCH_SIZE)
    stopped = [False]

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("embedding_loss")
            if loss is not None:
                on_progress(Progress(state.global_step, total_steps, 1, {"train_loss": loss}))

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop():
                stopped[0] = control.should_training_stop = True

    with tempfile.TemporaryDirectory(prefix="devmode-setfit-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,  # setfit's default is ./checkpoints in the working directory
            batch_size=BATCH_SIZE,
            num_epochs=1,
            num_iterations=ITERATIONS,
            max_steps=total_steps,
            body_learning_rate=BODY_LEARNING_RATE,
            max_length=config.max_length_tokens,
            seed=config.seed,
            report_to="none",
            save_strategy="no",
            logging_steps=max(1, config.log_every_steps),
            show_progress_bar=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set, callbacks=[Report()])
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the Trainer's own progress bar
            trainer.train()
        seconds = time.perf_counter() - started
    result = TrainResult(
        status="cancelled" if stopped[0] else "completed",
        steps=total_steps,
        epochs_run=1,
        best_epoch=1,
        validation=None,
        test=None,
        labels=data.labels,
        device=device.type,
        precision="fp32",
        train_seconds=seconds,
        samples_per_second=pairs * 2 / max(seconds, 1e-9),  # texts seen (two per pair)
        output_dir=None,
        loop_seconds=seconds,
        notes=[f"SetFit: {pairs:,} pairs, {total_steps} steps, then a logistic regression"],
    )
    if stopped[0]:
        return result
    classifier, tokenizer = as_text_classifier(model, len(data.labels))
    classifier.to(device)
    pad_id = tokenizer.pad_token_id or 0
    validation = encode(tokenizer, data.validation, data.labels, config.max_length_tokens)
    result.validation, eval_loss = evaluate(
        classifier, validation, data.labels, config.eval_batch_size, pad_id, device, use_bf16
    )
    on_progress(
        Progress(
            total_steps,
            total_steps,
            1,
            {
                "eval_loss": eval_loss,
                "eval_accuracy": result.validation["accuracy"],
                "eval_macro_f1": result.validation["macro_f1"],
            },
        )
    )
    judge_and_save(result, classifier, tokenizer, config, data, device, use_bf16, output_dir)
    classifier.cpu()
    return result


def as_text_classifier(model, num_labels: int) -> tuple[TextClassifier, object]:
    """A trained ``SetFitModel`` (sentence-transformers body, scikit-learn logistic regression)
    as a ``TextClassifier`` that gives the same probabilities, and its tokenizer."""
    body = (
        model.model_body
    )  # modules by class name: their import path moved in sentence-transformers 6
    transformer = body[0]
    pooling = next((m for m in body if type(m).__name__ == "Pooling"), None)
    mode = getattr(pooling, "pooling_mode", "mean")
    if mode not in POOLINGS:
        raise InvalidBaseModel(
            f"The base model pools its token vectors by {mode!r}; few-shot mode saves models that "
            f"pool by {' or '.join(POOLINGS)}. Pick a sentence encoder that does (the embedded "
            "all-MiniLM-L6-v2 pools by mean)."
        )
    normalize = any(type(m).__name__ == "Normalize" for m in body)
    classifier = TextClassifier(
        transformer.auto_model, num_labels, mode, dropout=0.0, normalize=normalize
    )
    head = model.model_head  # LogisticRegression, fitted on class ids 0..n-1
    coef = np.asarray(head.coef_, dtype=np.float32)
    intercept = np.asarray(head.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:  # two classes: sigmoid(z) == softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept]).astype(np.float32)
    with torch.no_grad():
        classifier.head.weight.copy_(torch.from_numpy(coef))
        classifier.head.bias.copy_(torch.from_numpy(intercept))
    return classifier.eval(), transformer.tokenizer
