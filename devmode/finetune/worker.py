"""Run a stored training run, in the foreground (CLI) or in its own process (pages).

    $ python -m devmode train phrasebank --epochs 3          # foreground, prints progress
    start_run(db_path, "phrasebank", TrainConfig())          # a new run, in a worker process
    execute_run(db_path, run_id, echo=print)                 # what the worker (or the CLI) does

A worker process outlives the page that started it (``jobs.start``): reloads, disconnects and
Streamlit reruns do not touch it, and the GPU memory is freed when it ends. Cancel is a flag in
the run's row; a killed worker leaves its run ``interrupted`` and resumable from the last
epoch's checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from devmode import environment, jobs
from devmode.data import examples, ingest
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.models import adapted_bases, registry, runs
from devmode.models.config import TrainConfig


class DatasetChanged(DevmodeError):
    """The dataset was replaced or re-split after the run was created."""


def run_dir(db_path: str | Path, run_id: int) -> Path:
    """Checkpoints and the worker's log of one run."""
    return runs.KIND.folder(db_path, run_id)


def model_dir(db_path: str | Path, run_id: int) -> Path:
    return registry.models_dir(environment.files_dir(db_path)) / f"run-{run_id}"


def start_run(db_path: str | Path, dataset: str, config: TrainConfig) -> runs.Run:
    """Create a run of ``config`` on ``dataset`` and start its worker: what *Start training*
    and ``train --background`` do. A second click while the same settings train on the same
    dataset is refused (``JobAlreadyRunning``), in one transaction with the check.
    """
    from devmode.finetune import distillation

    with open_db(db_path) as db, db.atomic():
        distillation.check_teachers(db, config, dataset)
        twin = runs.active_twin(db, dataset, config)
        if twin:
            raise jobs.JobAlreadyRunning(
                f"Run {twin.id} is already training these settings on {twin.dataset}; follow it "
                "in the Runs tab, or cancel it first."
            )
        run = runs.create_run(db, dataset, config)
    start_job(db_path, run.id)
    with open_db(db_path) as db:
        return runs.get_run(db, run.id)


def start_job(db_path: str | Path, run_id: int) -> int:
    """Start (or resume) run ``run_id`` in a worker process; returns its pid.

    :raises JobAlreadyRunning: if the run's worker is alive
    """
    return jobs.start(db_path, runs.KIND, run_id)


def resume_run(db_path: str | Path, run_id: int) -> int:
    """Resume an interrupted, cancelled or failed run in a worker process; returns its pid."""
    with open_db(db_path) as db:
        jobs.check_resumable(runs.KIND, runs.get_run(db, run_id, live=True))
    return start_job(db_path, run_id)


def load_training_data(db, run: runs.Run) -> examples.TrainData:
    """The run's dataset as ``TrainData``, checked against the hash and split seed the run pinned
    (the data itself was checked when the run was created)."""
    dataset = ingest.get_dataset(db, run.dataset)
    if (dataset.sha256, dataset.split.seed) != (run.dataset_sha256, run.split_seed):
        raise DatasetChanged(
            f"Dataset {run.dataset!r} changed after run {run.id} was created (its file hash or "
            "split seed differ), so the run could not be compared with its own baseline. Start "
            "a new run on the dataset as it is now."
        )
    return examples.load_examples(db, dataset.name)


def pin_label_version(db, run: runs.Run, *, resuming: bool) -> None:
    """Record the labels a run trains on: the dataset's label version when training starts
    (corrections may have come after the run was queued). A run that already trained on other
    labels is not resumed on corrected ones: its epochs would have seen two sets of labels."""
    version = ingest.get_dataset(db, run.dataset).label_version
    if version == run.label_version:
        return
    if resuming:
        raise DatasetChanged(
            f"Labels of {run.dataset!r} were corrected (label version {run.label_version} to "
            f"{version}) after run {run.id} began training, so resuming it would mix two sets of "
            "labels. Start a new run on the corrected labels."
        )
    db["devmode_runs"].update(run.id, {"label_version": version})


def compare_with_previous(
    db, run: runs.Run, data: examples.TrainData, say: Callable[[str], None]
) -> dict | None:
    """The newest earlier model trained on the same dataset, scored on this run's test rows:
    the report shows this run's gain over it on the same rows."""
    from devmode.finetune import evaluation

    previous = registry.latest_model(db, run.dataset, before_run=run.id)
    if previous is None:
        return None
    say(f"Scoring run {previous.run_id}'s model on the same test rows, for the gain")
    report = evaluation.previous_model_report(previous.path, data)
    return {"run_id": previous.run_id, **report}


def execute_run(
    db_path: str | Path,
    run_id: int,
    *,
    echo: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Train run ``run_id`` in this process, recording progress, reports and the final status.
    Returns the status.

    Resumes from the run's checkpoint when there is one (an interrupted or cancelled run).
    Errors are recorded on the run (``failed``) and raised again.
    """
    from devmode.finetune import distillation, evaluation, training
    from devmode.finetune.checkpoints import checkpoint_position

    say = echo or (lambda message: None)
    versions = json.dumps(runs.library_versions())
    with jobs.claimed(db_path, runs.KIND, run_id, versions=versions) as db:
        run = runs.get_run(db, run_id)
        position = checkpoint_position(run_dir(db_path, run_id))
        distilling = distillation.started(run_dir(db_path, run_id))
        if not distilling:  # a distilled run's steps count teachers and student: keep them all
            runs.clear_metrics_after(db, run_id, position["step"] if position else 0)
        pin_label_version(db, run, resuming=position is not None or distilling)
        data = load_training_data(db, run)
        config = adapted_bases.for_training(db, run.config)  # adapted:NAME to its folder
        if run.baseline is None:
            say("Scoring the baselines (majority class, zero-shot base model) on the test split")
            baseline = {
                "majority": evaluation.majority_report(data),
                "zero_shot": evaluation.zero_shot_report(config, data),
            }
            runs.save_figures(db, run_id, baseline=baseline)

        def report(p: training.Progress) -> None:
            runs.record_progress(db, run_id, p.step, p.total_steps, p.epoch, p.metrics)
            say(
                f"step {p.step}/{p.total_steps} epoch {p.epoch} "
                + " ".join(f"{k}={v:.4g}" for k, v in p.metrics.items())
            )

        train = distillation.trainer(db, config, run.dataset)
        result = train(
            config,
            data,
            output_dir=model_dir(db_path, run_id),
            checkpoint_dir=run_dir(db_path, run_id),
            on_progress=report,
            should_stop=jobs.CancelPoll(db, runs.KIND, run_id, also=should_stop),
        )
        figures = {
            "step": result.steps,
            "device": result.device,
            "precision": result.precision,
            "train_seconds": result.train_seconds,
            "samples_per_second": result.samples_per_second,
            "best_epoch": result.best_epoch,
            "validation": result.validation,
            "test": result.test,
        }
        seen = adapted_bases.overlap(db, run.config.base_model, [t for t, _ in data.test])
        if result.test and seen:
            result.test["caveat"] = (
                f"its base, {run.config.base_model}, read {seen:,} of these {len(data.test):,} "
                "test rows' texts while it adapted, so these figures are optimistic. Adapt on "
                "other text for a fair test."
            )
        if result.test and config.distil_from:
            result.test["caveat"] = (
                f"its teachers, evaluation {config.distil_from}'s fold models, trained on these "
                "test rows, so these figures are optimistic. For an estimate, evaluate the "
                "recipe with --distil-teachers N instead (each fold trains its own teachers)."
            )
        if result.status == jobs.CANCELLED:
            runs.set_status(db, run_id, jobs.CANCELLED, pid=None, **figures)
            return jobs.CANCELLED
        figures["comparison"] = compare_with_previous(db, run, data, say)
        with db.atomic():
            registry.register_model(db, run_id, run.dataset, result.labels, result.output_dir)
            runs.set_status(
                db, run_id, jobs.COMPLETED, pid=None, model_dir=result.output_dir, **figures
            )
    # the saved model is what stays; resume checkpoints (weights + optimizer state) do not
    for checkpoint in run_dir(db_path, run_id).rglob("*.pt"):  # teachers' and student's too
        checkpoint.unlink()
    (run_dir(db_path, run_id) / distillation.TARGETS_FILE).unlink(missing_ok=True)
    say(f"Test accuracy {result.test['accuracy']:.3f}, macro-F1 {result.test['macro_f1']:.3f}")
    return jobs.COMPLETED


def follow_run(db_path: str | Path, run_id: int) -> None:
    """Train run ``run_id`` as a non-main process under accelerate launch / torchrun.

    It reads the run and its data but writes nothing: the main process (``execute_run``)
    records progress, checkpoints and saves the model.
    """
    from devmode.finetune import training

    with open_db(db_path) as db:
        run = runs.get_run(db, run_id)
        data = load_training_data(db, run)
        config = adapted_bases.for_training(db, run.config)
    if config.distil_teachers or config.distil_from:
        raise DevmodeError(
            "Distillation trains in one process; drop accelerate launch / torchrun for it."
        )
    training.train(config, data, checkpoint_dir=run_dir(db_path, run_id))
