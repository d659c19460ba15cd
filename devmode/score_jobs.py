"""Scoring as a job: the active topic and sentiment models over a dataset, in the foreground (CLI)
or in a worker process of its own (the Monitor page), with progress, cancel and resume.

    job = create_job(db, "headlines")              # checks the models before anything runs
    start_job(db_path, job.id)                     # background: python -m devmode score-worker ID
    execute_job(db_path, job.id, echo=print)       # foreground: the same work in this process
    request_cancel(db, job.id)                     # the worker stops after its current chunk

Scoring itself is ``monitoring.score_dataset``: chunk-atomic and incremental, so resuming a
cancelled or killed job is simply running it again; whole chunks already written are kept.
The topic model scores first, so that alert rules on a topic see this job's topics.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from devmode import config as settings
from devmode import ingest, models, monitoring
from devmode.db import open_db, utc_now
from devmode.errors import DevmodeError
from devmode.runs import ACTIVE_STATUSES, JobAlreadyRunning, pid_alive

CANCEL_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class ScoreJob:
    id: int
    dataset_id: int
    dataset: str
    tasks: list[str]
    status: str
    pid: int | None
    task: str | None
    rows_done: int
    rows_total: int
    cancel_requested: bool
    summary: dict[str, Any]
    error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScoreJob:
        values = dict(row)
        values["tasks"] = json.loads(row["tasks"])
        values["summary"] = json.loads(row["summary"]) if row["summary"] else {}
        values["cancel_requested"] = bool(row["cancel_requested"])
        return cls(**values)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def fraction_done(self) -> float:
        """Of the task being scored now (each task scores its own rows)."""
        return min(1.0, self.rows_done / self.rows_total) if self.rows_total else 0.0


def create_job(db: Database, dataset_name: str, tasks: list[str] | None = None) -> ScoreJob:
    """A queued job scoring ``dataset_name`` with the active model of each task.

    :param tasks: default: topic (when a topic model is active) then sentiment
    :raises NoActiveModel, NotSentimentLike: before anything is stored
    :raises JobAlreadyRunning: when a live job is scoring the same dataset
    """
    dataset = ingest.get_dataset(db, dataset_name)
    if tasks is None:
        tasks = [t for t in ("topic",) if models.active_model(db, t)] + ["sentiment"]
    for task in tasks:
        model = monitoring.require_active_model(db, task)
        if task == "sentiment":
            monitoring.sentiment_map(db, model)
    reconcile(db)
    running = active_job(db, dataset.name)
    if running:
        raise JobAlreadyRunning(
            f"Job {running.id} is already scoring {dataset.name!r}; wait for it or cancel it."
        )
    stamp = utc_now()
    job_id = (
        db["devmode_score_jobs"]
        .insert(
            {
                "dataset_id": dataset.id,
                "dataset": dataset.name,
                "tasks": json.dumps(tasks),
                "status": "queued",
                "summary": "{}",
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
        .last_pk
    )
    return get_job(db, job_id)


def get_job(db: Database, job_id: int) -> ScoreJob:
    try:
        return ScoreJob.from_row(db["devmode_score_jobs"].get(job_id))
    except NotFoundError:
        raise DevmodeError(f"No scoring job with id {job_id}.") from None


def latest_job(db: Database, dataset_name: str) -> ScoreJob | None:
    """The dataset's newest job (after marking dead workers' jobs interrupted)."""
    reconcile(db)
    dataset = ingest.get_dataset(db, dataset_name)
    row = next(
        db["devmode_score_jobs"].rows_where(
            "dataset_id = ?", [dataset.id], order_by="id desc", limit=1
        ),
        None,
    )
    return ScoreJob.from_row(row) if row else None


def active_job(db: Database, dataset_name: str) -> ScoreJob | None:
    job = latest_job(db, dataset_name)
    return job if job and job.is_active else None


def _update(db: Database, job_id: int, **values: Any) -> None:
    if "summary" in values:
        values["summary"] = json.dumps(values["summary"])
    db["devmode_score_jobs"].update(job_id, {**values, "updated_at": utc_now()})


def request_cancel(db: Database, job_id: int) -> ScoreJob:
    """Ask the job's worker to stop after its current chunk; a job with no worker stops now."""
    job = get_job(db, job_id)
    if job.is_active:
        _update(db, job_id, cancel_requested=1)
        if not pid_alive(job.pid):
            _update(db, job_id, status="cancelled", pid=None)
    return get_job(db, job_id)


def reconcile(db: Database) -> list[int]:
    """Mark jobs whose worker is gone (killed, crashed, rebooted) ``interrupted``."""
    gone = [
        row["id"]
        for row in db["devmode_score_jobs"].rows_where("status in ('queued', 'running')")
        if row["pid"] and not pid_alive(row["pid"])
    ]
    for job_id in gone:
        _update(
            db,
            job_id,
            status="interrupted",
            pid=None,
            error="The scoring process stopped without finishing (killed or crashed). Resume "
            "it: the rows already scored are kept.",
        )
    return gone


def execute_job(
    db_path: str | Path, job_id: int, *, echo: Callable[[str], None] | None = None
) -> ScoreJob:
    """Score the job's tasks in this process, recording progress; returns the finished job.

    A cancel request (or Ctrl-C) stops it after the current chunk, ``cancelled``; an error is
    recorded (``failed``) and raised again.
    """
    with open_db(db_path) as db:
        job = get_job(db, job_id)
        if job.status == "completed":
            raise DevmodeError(f"Scoring job {job_id} has already completed.")
        _update(db, job_id, status="running", pid=os.getpid(), cancel_requested=0, error=None)
        last_poll = [0.0]

        def should_stop() -> bool:
            if time.monotonic() - last_poll[0] < CANCEL_POLL_SECONDS:
                return False
            last_poll[0] = time.monotonic()
            return bool(get_job(db, job_id).cancel_requested)

        summary = dict(job.summary)
        try:
            for task in job.tasks:
                _update(db, job_id, task=task, rows_done=0, rows_total=0)
                result = monitoring.score_dataset(
                    db,
                    job.dataset,
                    task=task,
                    on_progress=lambda done, total: _update(
                        db, job_id, rows_done=done, rows_total=total
                    ),
                    should_stop=should_stop,
                )
                summary[task] = _merge(summary.get(task), result)
                _update(db, job_id, summary=summary)
                if echo:
                    echo(_describe(task, result))
                if result.cancelled:
                    _update(db, job_id, status="cancelled", pid=None)
                    return get_job(db, job_id)
        except KeyboardInterrupt:
            _update(db, job_id, status="cancelled", pid=None, summary=summary)
            raise
        except BaseException as e:
            message = str(e) if isinstance(e, DevmodeError) else f"{type(e).__name__}: {e}"
            _update(db, job_id, status="failed", pid=None, error=message, summary=summary)
            raise
        _update(db, job_id, status="completed", pid=None)
        return get_job(db, job_id)


def start_job(db_path: str | Path, job_id: int) -> int:
    """Start (or resume) job ``job_id`` in a worker process; returns its pid."""
    from devmode.worker import spawn_worker

    db_path = str(Path(db_path).resolve())
    with open_db(db_path) as db:
        reconcile(db)
        job = get_job(db, job_id)
        if job.is_active and pid_alive(job.pid):
            raise JobAlreadyRunning(f"Scoring job {job_id} is already running.")
        folder = settings.files_dir(db_path) / "score-jobs" / f"job-{job_id}"
        process = spawn_worker(db_path, ["score-worker", str(job_id)], folder)
        _update(db, job_id, status="queued", pid=process.pid, cancel_requested=0, error=None)
    return process.pid


def _merge(earlier: dict[str, Any] | None, result: monitoring.ScoreSummary) -> dict[str, Any]:
    """A task's summary over all the job's attempts (a resumed job adds to what it did before)."""
    earlier = earlier or {}
    return {
        "scored": earlier.get("scored", 0) + result.scored,
        "unparseable_dates": earlier.get("unparseable_dates", 0) + result.unparseable_dates,
        "date_examples": (earlier.get("date_examples", []) + result.date_examples)[:5],
        "new_alerts": earlier.get("new_alerts", 0) + result.new_alerts,
        "model_run_id": result.model_run_id,
    }


def _describe(task: str, result: monitoring.ScoreSummary) -> str:
    verb = "Stopped after scoring" if result.cancelled else "Scored"
    return (
        f"{task}: {verb} {result.scored:,} rows with run {result.model_run_id}'s model "
        f"({result.already_scored:,} were already scored by it)."
    )


def describe_job(job: ScoreJob, *, per_task: bool = True) -> list[str]:
    """What a person should read about a finished job, a sentence each.

    :param per_task: include a line per task with the rows it scored (the CLI has echoed those)
    """
    lines = []
    for task in job.tasks:
        figures = job.summary.get(task)
        if figures and per_task:
            lines.append(
                f"{task}: {figures['scored']:,} rows scored with run {figures['model_run_id']}'s model."
            )
    sentiment = job.summary.get("sentiment", {})
    if sentiment.get("unparseable_dates"):
        lines.append(
            f"{sentiment['unparseable_dates']:,} rows have a date that could not be read (e.g. "
            f"{', '.join(map(repr, sentiment['date_examples']))}); they are scored but left out "
            "of trends. Expected dates like 2020-05-22 or 2020-05-22 11:38:00-04:00."
        )
    if sentiment.get("new_alerts"):
        lines.append(
            f"{sentiment['new_alerts']} new alerts: python -m devmode alerts list {job.dataset}"
        )
    return lines
