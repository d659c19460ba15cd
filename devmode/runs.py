"""Run bookkeeping: a training run's row, its status, its progress and metrics, in SQLite.

    run = create_run(db, TrainConfig("phrasebank", epochs=3))
    set_status(db, run.id, "running", pid=os.getpid())
    record_progress(db, run.id, progress)
    metrics_for_run(db, run.id)      # long format: step, epoch, name, value

SQLite is the only channel between a worker process and the pages: a page that reloads reads
the same rows the worker keeps writing.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from devmode import __version__, ingest
from devmode.config import TrainConfig, resolve_base_model
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.trainset import check_data, load_examples

# queued: created, no worker yet; interrupted: its worker died without saying so (resumable).
RUN_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
_JSON_FIELDS = ("versions", "baseline", "validation", "test")


class RunNotFound(DevmodeError):
    """No run has that id."""


class JobAlreadyRunning(DevmodeError):
    """The run already has a live worker."""


@dataclass(frozen=True)
class Run:
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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        values = dict(row)
        values["config"] = TrainConfig.from_dict(json.loads(row["config"]))
        for name in _JSON_FIELDS:
            values[name] = json.loads(row[name]) if row[name] else None
        values["cancel_requested"] = bool(row["cancel_requested"])
        values["step"] = row["step"] or 0
        values["total_steps"] = row["total_steps"] or 0
        values["epoch"] = row["epoch"] or 0
        return cls(**values)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def eta_seconds(self, samples_per_second: float | None) -> float | None:
        """Seconds of training left at ``samples_per_second`` (the latest logged speed), or
        None before the first log step. Evaluation time is not included."""
        if not samples_per_second or not self.total_steps:
            return None
        return (self.total_steps - self.step) * self.config.batch_size / samples_per_second


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


def create_run(db: Database, config: TrainConfig) -> Run:
    """Queue a run of ``config`` on its dataset, pinning the dataset's hash and split seed.

    Everything that can be judged without loading a model is judged here, so a bad dataset or
    base model is refused before a run exists: InvalidTrainingData, InvalidBaseModel.
    """
    dataset = ingest.get_dataset(db, config.dataset)
    resolve_base_model(config.base_model)
    check_data(load_examples(db, dataset.name))
    config = TrainConfig.from_dict({**config.to_dict(), "dataset": dataset.name})
    row_id = (
        db["devmode_runs"]
        .insert(
            {
                "dataset": dataset.name,
                "dataset_sha256": dataset.sha256,
                "split_seed": dataset.split.seed,
                "config": json.dumps(config.to_dict()),
                "status": "queued",
                "created_at": utc_now(),
            }
        )
        .last_pk
    )
    return get_run(db, row_id)


def get_run(db: Database, run_id: int) -> Run:
    try:
        return Run.from_row(db["devmode_runs"].get(run_id))
    except NotFoundError:
        raise RunNotFound(
            f"No run with id {run_id}. List the runs with python -m devmode runs list."
        ) from None


def list_runs(db: Database, dataset: str | None = None) -> list[Run]:
    """Runs, newest first; those of one dataset if given."""
    where, args = ("lower(dataset) = lower(?)", [dataset]) if dataset else (None, [])
    return [Run.from_row(r) for r in db["devmode_runs"].rows_where(where, args, order_by="id desc")]


def set_status(db: Database, run_id: int, status: str, **values: Any) -> None:
    """Move a run to ``status``; finished statuses stamp ``finished_at``, running ``started_at``."""
    if status not in RUN_STATUSES:
        raise ValueError(f"status must be one of {RUN_STATUSES}, not {status!r}")
    for name in _JSON_FIELDS:
        if name in values and not isinstance(values[name], (str, type(None))):
            values[name] = json.dumps(values[name])
    stamp = utc_now()
    if status == "running":
        values.setdefault("started_at", stamp)
        values.setdefault("heartbeat_at", stamp)
        values.setdefault("finished_at", None)
        values.setdefault("error", None)
    elif status in FINISHED_STATUSES:
        values.setdefault("finished_at", stamp)
    db["devmode_runs"].update(run_id, {"status": status, **values})


def request_cancel(db: Database, run_id: int) -> Run:
    """Ask a run's worker to stop after its current step; a queued run is cancelled at once."""
    run = get_run(db, run_id)
    if run.status == "queued" and not run.pid:
        set_status(db, run_id, "cancelled")
    elif run.is_active:
        db["devmode_runs"].update(run_id, {"cancel_requested": 1})
    return get_run(db, run_id)


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


def reconcile(db: Database) -> list[int]:
    """Mark runs whose worker process is gone as ``interrupted``; returns their ids.

    Called whenever runs are listed, so a killed worker (kill -9, a reboot) never leaves a run
    that claims to be running.
    """
    gone = [
        r["id"]
        for r in db["devmode_runs"].rows_where(
            "status in ('queued', 'running') and pid is not null"
        )
        if not pid_alive(r["pid"])
    ]
    for run_id in gone:
        set_status(
            db,
            run_id,
            "interrupted",
            pid=None,
            error="The worker process stopped without finishing (killed or crashed). "
            "Resume the run to continue from its last checkpoint.",
        )
    return gone


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) devmode process."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return state not in ("Z", "X") and b"devmode" in cmdline
    try:  # no /proc (macOS): ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
