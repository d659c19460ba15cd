"""A label review as a job: in a worker process of its own (the Datasets page) or in the
foreground (the CLI), with progress a reloaded page reads back, and cancel.

    job = start_review(db_path, "phrasebank", mode="thorough")   # a worker process
    latest_review(db, "phrasebank")            # what the page shows: status, done of total
    request_cancel(db, job.id)                 # the worker stops at its next progress report

The review itself is ``corrections.review_dataset``: its suggestions replace the open ones in
one transaction when it finishes, so a cancelled or killed review leaves the earlier ones as
they were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode import jobs
from devmode.data import examples, ingest
from devmode.db import open_db, utc_now
from devmode.errors import DevmodeError
from devmode.labels import corrections, review

# What a worker process runs: ``python -m devmode job review ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="review",
    execute="devmode.labels.review_jobs:execute_review",
    table="devmode_review_jobs",
    noun="Label review",
    folder_name="reviews",
    touched_column="updated_at",
    interrupted_message="The review process stopped without finishing (killed or crashed). "
    "Start the review again: suggestions are stored only when a review finishes.",
    list_command="the Datasets page",
)


class ReviewCancelled(DevmodeError):
    """A person cancelled the review."""


@dataclass(frozen=True)
class ReviewJob(jobs.JobRecord):
    dataset_id: int
    dataset: str
    mode: str
    base_model: str
    suggestions: int | None

    def progress_text(self) -> str:
        """'Thorough review of phrasebank: 41% (review 3)'."""
        return (
            f"{self.mode.capitalize()} review of {self.dataset}: {self.fraction_done:.0%} "
            f"(review {self.id}, {self.status})"
        )


def start_review(
    db_path: str | Path, name: str, *, mode: str = "quick", base_model: str = "embedded"
) -> ReviewJob:
    """Check the labels can be reviewed, queue a review of ``name`` and start its worker. A
    second review of the same dataset while one is at work is refused (``JobAlreadyRunning``)."""
    if mode not in review.MODES:
        raise review.ReviewNotPossible(
            f"mode must be one of {', '.join(review.MODES)}; found {mode!r}."
        )
    with open_db(db_path) as db, db.atomic():
        jobs.reconcile(db, KIND)
        dataset = ingest.get_dataset(db, name)
        review.check_reviewable([label for _, _, label in examples.labelled_rows(db, dataset.name)])
        busy = latest_review(db, dataset.name)
        if busy and busy.is_active:
            raise jobs.JobAlreadyRunning(
                f"Review {busy.id} of {dataset.name} is already at work ({busy.fraction_done:.0%}); "
                "wait for it, or cancel it first."
            )
        now = utc_now()
        job_id = (
            db[KIND.table]
            .insert(
                {
                    "dataset_id": dataset.id,
                    "dataset": dataset.name,
                    "mode": mode,
                    "base_model": base_model,
                    "status": jobs.QUEUED,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            .last_pk
        )
    jobs.start(db_path, KIND, job_id)
    with open_db(db_path) as db:
        return get_review(db, job_id)


def execute_review(
    db_path: str | Path, job_id: int, *, echo: Callable[[str], None] = lambda line: None
) -> list[dict[str, Any]]:
    """Run review ``job_id`` in this process (what its worker does); returns the suggestions."""
    with jobs.claimed(db_path, KIND, job_id) as db:
        job = get_review(db, job_id)
        should_stop = jobs.CancelPoll(db, KIND, job_id)

        def progress(done: int, total: int) -> None:
            db[KIND.table].update(job_id, {"done": done, "total": total, "updated_at": utc_now()})
            if should_stop():
                raise ReviewCancelled(
                    f"Review {job_id} was cancelled; the earlier suggestions stay."
                )

        echo(f"{job.mode} review of {job.dataset}")
        try:
            found = corrections.review_dataset(
                db, job.dataset, job.base_model, mode=job.mode, on_progress=progress
            )
        except ReviewCancelled:
            jobs.set_status(db, KIND, job_id, jobs.CANCELLED, pid=None)
            return []
        jobs.set_status(db, KIND, job_id, jobs.COMPLETED, pid=None, suggestions=len(found))
        echo(f"{len(found)} suggestions")
        return found


def get_review(db: Database, job_id: int) -> ReviewJob:
    return ReviewJob(**jobs.get_row(db, KIND, job_id))


def latest_review(db: Database, name: str) -> ReviewJob | None:
    """The newest review of dataset ``name`` (by its id), after marking dead workers'."""
    jobs.reconcile(db, KIND)
    dataset = ingest.get_dataset(db, name)
    row = next(
        db[KIND.table].rows_where("dataset_id = ?", [dataset.id], order_by="id desc", limit=1),
        None,
    )
    return ReviewJob(**row) if row else None


def request_cancel(db: Database, job_id: int) -> None:
    jobs.request_cancel(db, KIND, job_id)
