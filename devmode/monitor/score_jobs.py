"""Scoring as a job: the active topic and sentiment models over a dataset, in the foreground (CLI)
or in a worker process of its own (the Monitor page), with progress, cancel and resume.

    job = create_job(db, "headlines")              # checks the models before anything runs
    start_job(db_path, job.id)                     # background: python -m devmode job scoring ID
                                                   # (jobs.py: the runner training runs use too)
    execute_job(db_path, job.id, echo=print)       # foreground: the same work in this process
    request_cancel(db, job.id)                     # the worker stops after its current chunk

Scoring itself is ``monitoring.score_dataset``: chunk-atomic and incremental, so resuming a
cancelled or killed job is simply running it again; whole chunks already written are kept.
The topic model scores first, so that alert rules on a topic see this job's topics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode import jobs
from devmode.data import ingest
from devmode.db import open_db, utc_now
from devmode.models import registry
from devmode.monitor import monitoring

# What a worker process runs: ``python -m devmode job scoring ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="scoring",
    execute="devmode.monitor.score_jobs:execute_job",
    table="devmode_score_jobs",
    noun="Scoring job",
    folder_name="score-jobs",
    touched_column="updated_at",
    interrupted_message="The scoring process stopped without finishing (killed or crashed). "
    "Resume it: the rows already scored are kept.",
    list_command="the Monitor page",
)


class ScoreJobNotFound(jobs.JobNotFound):
    """No scoring job has that id."""


@dataclass(frozen=True)
class ScoreJob(jobs.JobState):
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
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScoreJob:
        values = dict(row)
        values["tasks"] = json.loads(row["tasks"])
        values["summary"] = json.loads(row["summary"]) if row["summary"] else {}
        values["cancel_requested"] = bool(row["cancel_requested"])
        return cls(**values)

    @property
    def fraction_done(self) -> float:
        """Of the task being scored now (each task scores its own rows)."""
        return jobs.fraction(self.rows_done, self.rows_total)

    def progress_text(self) -> str:
        """'Scoring with the sentiment model: 2,048 of 9,958 rows (job 1, topic then sentiment)'."""
        what = f"Scoring with the {self.task} model" if self.task else "Starting the scoring job"
        return (
            f"{what}: {self.rows_done:,} of {self.rows_total:,} rows (job {self.id}, "
            f"{' then '.join(self.tasks)})"
        )


def create_job(db: Database, dataset_name: str, tasks: list[str] | None = None) -> ScoreJob:
    """A queued job scoring ``dataset_name`` with the active model of each task.

    :param tasks: default: topic (when a topic model is active) then sentiment
    :raises NoActiveModel, registry.NotSentimentLike: before anything is stored
    :raises JobAlreadyRunning: when a live job is scoring the same dataset (checked and stored
        in one transaction, so two quick clicks make one job)
    """
    dataset = ingest.get_dataset(db, dataset_name)
    if tasks is None:
        tasks = [t for t in ("topic",) if registry.active_model(db, t)] + ["sentiment"]
    for task in tasks:
        model = monitoring.require_active_model(db, task)
        if task == "sentiment":
            registry.sentiment_map(db, model)
    with db.atomic():
        running = active_job(db, dataset.name)
        if running:
            raise jobs.JobAlreadyRunning(
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
                    "status": jobs.QUEUED,
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
        return ScoreJob.from_row(jobs.get_row(db, KIND, job_id))
    except jobs.JobNotFound:
        raise ScoreJobNotFound(f"No scoring job with id {job_id}.") from None


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
    get_job(db, job_id)
    jobs.request_cancel(db, KIND, job_id)
    return get_job(db, job_id)


def reconcile(db: Database) -> list[int]:
    """Mark jobs whose worker is gone (killed, crashed, rebooted) ``interrupted``."""
    return jobs.reconcile(db, KIND)


def execute_job(
    db_path: str | Path, job_id: int, *, echo: Callable[[str], None] | None = None
) -> ScoreJob:
    """Score the job's tasks in this process, recording progress; returns the finished job.

    A cancel request (or Ctrl-C) stops it after the current chunk, ``cancelled``; an error is
    recorded (``failed``) and raised again.
    """
    with jobs.claimed(db_path, KIND, job_id) as db:
        job = get_job(db, job_id)
        should_stop = jobs.CancelPoll(db, KIND, job_id)
        summary = dict(job.summary)
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
                jobs.set_status(db, KIND, job_id, jobs.CANCELLED, pid=None)
                return get_job(db, job_id)
        jobs.set_status(db, KIND, job_id, jobs.COMPLETED, pid=None)
        return get_job(db, job_id)


def start_job(db_path: str | Path, job_id: int) -> int:
    """Start (or resume) job ``job_id`` in a worker process; returns its pid.

    :raises JobAlreadyRunning: if its worker is alive
    """
    return jobs.start(db_path, KIND, job_id)


def start_scoring(db_path: str | Path, dataset_name: str) -> ScoreJob:
    """A new job scoring ``dataset_name`` with the active models, started in a worker process:
    what *Score new rows* does."""
    with open_db(db_path) as db:
        job = create_job(db, dataset_name)
    start_job(db_path, job.id)
    with open_db(db_path) as db:
        return get_job(db, job.id)


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
