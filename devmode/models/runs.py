"""Run bookkeeping: a training run's row, its progress and metrics, in SQLite.

    run = create_run(db, "phrasebank", TrainConfig(epochs=3))   # refused here if it cannot train
    record_progress(db, run.id, step, total_steps, epoch, {"train_loss": 0.41})
    metrics_for_run(db, run.id)      # long format: step, epoch, name, value

A run is a job (``KIND``): its status, worker process, cancel flag and failure are
kept by the job runner; this module adds what only a training run has. SQLite is the only
channel between a worker process and the pages: a page that reloads reads the same rows the
worker keeps writing.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from devmode import __version__, jobs
from devmode.data import examples, ingest
from devmode.db import utc_now
from devmode.models import methods
from devmode.models.base_models import resolve_base_model
from devmode.models.config import TrainConfig

# What a worker process runs: ``python -m devmode job training ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="training",
    execute="devmode.finetune.worker:execute_run",
    table="devmode_runs",
    noun="Run",
    folder_name="runs",
    touched_column="heartbeat_at",
    interrupted_message="The worker process stopped without finishing (killed or crashed). "
    "Resume the run to continue from its last checkpoint.",
    list_command="python -m devmode runs list",
)

_JSON_FIELDS = ("config", "versions", "baseline", "validation", "test", "comparison")
# What an exported model carries of its run (what a report needs, nothing about this machine).
RECORD_FIELDS = (
    "dataset",
    "dataset_sha256",
    "split_seed",
    "config",
    "versions",
    "baseline",
    "validation",
    "test",
    "best_epoch",
    "device",
    "precision",
    "train_seconds",
    "samples_per_second",
)


class RunNotFound(jobs.JobNotFound):
    """No run has that id."""


@dataclass(frozen=True)
class Run(jobs.JobState):
    id: int
    dataset: str
    dataset_sha256: str
    split_seed: int
    config: TrainConfig
    status: str
    pid: int | None
    cancel_requested: bool
    error: str | None
    step: int
    total_steps: int
    epoch: int
    device: str | None
    precision: str | None
    versions: dict[str, str] | None
    baseline: dict[str, Any] | None
    validation: dict[str, Any] | None
    test: dict[str, Any] | None
    best_epoch: int | None
    train_seconds: float | None
    samples_per_second: float | None
    model_dir: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    label_version: int = 0  # the dataset's label version when the run was queued
    comparison: dict[str, Any] | None = None  # the previous model on this run's test rows

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        """A stored run: its config was validated when the run was created or imported."""
        values = dict(row)
        for name in _JSON_FIELDS:
            values[name] = json.loads(row[name]) if row[name] else None
        values["config"] = TrainConfig.from_stored(values["config"] or {})
        values["cancel_requested"] = bool(row["cancel_requested"])
        values["step"] = row["step"] or 0
        values["total_steps"] = row["total_steps"] or 0
        values["epoch"] = row["epoch"] or 0
        return cls(**values)

    @property
    def fraction_done(self) -> float:
        return jobs.fraction(self.step, self.total_steps)

    def progress_text(self) -> str:
        """'Run 3: 40% (step 18 of 45)', under its progress bar."""
        return f"Run {self.id}: {self.fraction_done:.0%} (step {self.step} of {self.total_steps})"

    @property
    def epochs_planned(self) -> int:
        """A few-shot run makes one pass over its pairs, whatever ``epochs`` says."""
        return 1 if self.config.method == "few-shot" else self.config.epochs

    def eta_seconds(self, samples_per_second: float | None) -> float | None:
        """Seconds of training left at ``samples_per_second`` (the latest logged speed), or
        None before the first log step. Evaluation time is not included."""
        if not samples_per_second or not self.total_steps:
            return None
        return (self.total_steps - self.step) * self.config.batch_size / samples_per_second

    def status_line(self, metrics: list[dict[str, Any]]) -> str:
        """'**running** · step 40/140 · epoch 2/5 · about 1 min 05 s left' (Markdown)."""
        line = (
            f"**{self.status}** · step {self.step:,}/{self.total_steps:,} · "
            f"epoch {self.epoch}/{self.epochs_planned}"
        )
        if self.is_active:
            speeds = [m["value"] for m in metrics if m["name"] == "samples_per_second"]
            line += f" · about {_duration(self.eta_seconds(speeds[-1] if speeds else None))} left"
        return line

    def describe_training(self) -> str:
        """Where and how fast it trained, and with which library versions."""
        return (
            f"Trained {self.train_seconds or 0:.0f} s on {self.device} ({self.precision}), "
            f"{self.samples_per_second or 0:,.0f} samples/s; versions {self.versions}."
        )

    def label(self) -> str:
        """How a list of runs names it: 'run 3 · phrasebank · completed'."""
        return f"run {self.id} · {self.dataset} · {self.status}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def library_versions() -> dict[str, str]:
    """Versions that decide what a run computes, recorded with it for reproducibility."""
    import torch
    import transformers

    return {
        "devmode": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def create_run(db: Database, dataset_name: str, config: TrainConfig) -> Run:
    """Queue a run of ``config`` on ``dataset_name``, pinning the dataset's hash and split seed.

    ``config`` was validated when it was built; everything else that can be judged without
    loading a model is judged here, so a bad dataset or base model is refused before a run
    exists: NoSuchDataset, InvalidTrainingData, InvalidBaseModel.
    """
    from devmode.models import adapted_bases

    dataset = ingest.get_dataset(db, dataset_name)
    resolve_base_model(adapted_bases.resolve(db, config.base_model))
    data = examples.load_examples(db, dataset.name)
    methods.check_for_method(config, data)
    row_id = (
        db["devmode_runs"]
        .insert(
            {
                "dataset": dataset.name,
                "dataset_sha256": dataset.sha256,
                "label_version": dataset.label_version,
                "split_seed": dataset.split.seed,
                "config": json.dumps(config.to_dict()),
                "status": jobs.QUEUED,
                "created_at": utc_now(),
            }
        )
        .last_pk
    )
    return get_run(db, row_id)


def add_imported_run(db: Database, record: dict[str, Any], source: str) -> int:
    """A completed run for a model imported from an archive: its record (``RECORD_FIELDS``,
    checked by the caller), with the archive's name among its versions. Returns the run's id."""
    versions = {**(record.get("versions") or {}), "imported_from": source}
    stamp = utc_now()
    values = {k: record.get(k) for k in RECORD_FIELDS}
    values.update(versions=versions, status=jobs.COMPLETED, created_at=stamp, finished_at=stamp)
    return db["devmode_runs"].insert(_encoded(values)).last_pk


def run_record(db: Database, run_id: int) -> dict[str, Any]:
    """What an exported model carries of run ``run_id`` (``RECORD_FIELDS``)."""
    row = get_row(db, run_id)
    return {
        k: json.loads(row[k]) if k in _JSON_FIELDS and row[k] else row[k] for k in RECORD_FIELDS
    }


def get_row(db: Database, run_id: int) -> dict[str, Any]:
    try:
        return jobs.get_row(db, KIND, run_id)
    except jobs.JobNotFound:
        raise RunNotFound(
            f"No run with id {run_id}. List the runs with python -m devmode runs list."
        ) from None


def get_run(db: Database, run_id: int, *, live: bool = False) -> Run:
    """Run ``run_id``. ``live``: as a person should see it, a run whose worker died marked
    interrupted first (``list_runs`` always is); a worker reading its own run leaves it out."""
    if live:
        reconcile(db)
    return Run.from_row(get_row(db, run_id))


def list_runs(db: Database, dataset: str | None = None) -> list[Run]:
    """Runs, newest first; those of one dataset if given (runs whose worker died are marked
    interrupted first)."""
    reconcile(db)
    where, args = ("lower(dataset) = lower(?)", [dataset]) if dataset else (None, [])
    return [Run.from_row(r) for r in db["devmode_runs"].rows_where(where, args, order_by="id desc")]


def get_runs(db: Database, run_ids: list[int]) -> list[Run]:
    """Runs by id, in the order asked."""
    return [get_run(db, run_id) for run_id in run_ids]


def run_labels(found: list[Run], *, status: bool = True) -> dict[int, str]:
    """How a list of runs names each one, by id: ``{3: "run 3 · phrasebank · completed"}``.
    Without ``status`` the names stay the same while runs finish (a multiselect keeps its
    choices by their names)."""
    return {run.id: run.label() if status else f"run {run.id} · {run.dataset}" for run in found}


def active_twin(db: Database, dataset_name: str, config: TrainConfig) -> Run | None:
    """A queued or running run of the same settings on the same dataset (a second click on
    Start), or None."""
    config_json = json.dumps(config.to_dict())
    rows = db["devmode_runs"].rows_where(
        f"lower(dataset) = lower(?) and status in ({', '.join('?' * len(jobs.ACTIVE_STATUSES))})",
        [dataset_name, *jobs.ACTIVE_STATUSES],
    )
    return next((Run.from_row(r) for r in rows if r["config"] == config_json), None)


def set_status(db: Database, run_id: int, status: str, **values: Any) -> None:
    """Move a run to ``status`` (see ``jobs.set_status``), storing ``values`` with it."""
    jobs.set_status(db, KIND, run_id, status, **_encoded(values))


def save_figures(db: Database, run_id: int, **values: Any) -> None:
    """Store what a run found (its baseline, reports, speed) without changing its status."""
    db["devmode_runs"].update(run_id, _encoded(values))


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: json.dumps(v) if k in _JSON_FIELDS and not isinstance(v, (str, type(None))) else v
        for k, v in values.items()
    }


def request_cancel(db: Database, run_id: int) -> Run:
    """Ask a run's worker to stop after its current step; a run with no worker stops now."""
    get_row(db, run_id)
    jobs.request_cancel(db, KIND, run_id)
    return get_run(db, run_id)


def reconcile(db: Database) -> list[int]:
    """Mark runs whose worker process is gone as ``interrupted``; returns their ids."""
    return jobs.reconcile(db, KIND)


def record_progress(
    db: Database, run_id: int, step: int, total_steps: int, epoch: int, metrics: dict[str, float]
) -> None:
    """Store one progress report (metrics in long format) and the run's position, in one write."""
    stamp = utc_now()
    with db.atomic():
        db["devmode_run_metrics"].insert_all(
            {
                "run_id": run_id,
                "step": step,
                "epoch": epoch,
                "name": name,
                "value": float(value),
                "created_at": stamp,
            }
            for name, value in metrics.items()
        )
        db["devmode_runs"].update(
            run_id,
            {"step": step, "total_steps": total_steps, "epoch": epoch, "heartbeat_at": stamp},
        )


def metrics_for_run(
    db: Database, run_id: int, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """A run's metrics in step order: ``[{"step", "epoch", "name", "value"}, ...]``."""
    where, args = "run_id = ?", [run_id]
    if names:
        where += f" and name in ({', '.join('?' * len(names))})"
        args += names
    return list(
        db["devmode_run_metrics"].rows_where(
            where, args, select="step, epoch, name, value", order_by="step, id"
        )
    )


def clear_metrics_after(db: Database, run_id: int, step: int) -> None:
    """Drop metrics past ``step``: a resumed run repeats the steps after its last checkpoint."""
    db["devmode_run_metrics"].delete_where("run_id = ? and step > ?", [run_id, step])
