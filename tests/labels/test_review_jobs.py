"""A label review as a job: a worker process the page follows, one at a time per dataset,
cancelled without touching the suggestions already stored."""

import pytest

from devmode import jobs
from devmode.data import ingest
from devmode.db import open_db, utc_now
from devmode.labels import corrections, review, review_jobs
from tests.conftest import store_tiny_dataset, wait_for


def test_a_review_runs_in_a_worker_and_stores_its_suggestions(db_path, tmp_path, tiny_model_dir):
    store_tiny_dataset(db_path, tmp_path)
    job = review_jobs.start_review(db_path, "tiny", base_model=str(tiny_model_dir))
    assert job.is_active and job.mode == "quick"
    with pytest.raises(jobs.JobAlreadyRunning, match=f"Review {job.id} of tiny is already at work"):
        review_jobs.start_review(db_path, "tiny", base_model=str(tiny_model_dir))

    def finished():
        with open_db(db_path) as db:
            now = review_jobs.latest_review(db, "tiny")
        return now if not now.is_active else None

    done = wait_for(finished, timeout=120, what="the review to finish")
    assert done.status == jobs.COMPLETED, done.error
    assert done.done == done.total > 0 and done.fraction_done == 1.0
    with open_db(db_path) as db:
        assert done.suggestions == len(corrections.open_suggestions(db, "tiny"))
    log = review_jobs.KIND.folder(db_path, done.id) / "worker.log"
    assert "quick review of tiny" in log.read_text()


def test_a_cancelled_review_keeps_the_earlier_suggestions(db_path, tmp_path, tiny_model_dir):
    store_tiny_dataset(db_path, tmp_path)
    with open_db(db_path) as db:
        earlier = corrections.review_dataset(db, "tiny", str(tiny_model_dir))
        dataset = ingest.get_dataset(db, "tiny")
        job_id = (
            db[review_jobs.KIND.table]
            .insert(
                {
                    "dataset_id": dataset.id,
                    "dataset": "tiny",
                    "mode": "quick",
                    "base_model": str(tiny_model_dir),
                    "status": jobs.QUEUED,
                    "cancel_requested": 1,  # asked for while it was queued
                    "created_at": utc_now(),
                }
            )
            .last_pk
        )
    assert review_jobs.execute_review(db_path, job_id) == []
    with open_db(db_path) as db:
        assert review_jobs.get_review(db, job_id).status == jobs.CANCELLED
        assert corrections.open_suggestions(db, "tiny") == earlier


def test_a_review_that_cannot_run_is_refused_before_a_job_exists(db_path, tmp_path):
    store_tiny_dataset(db_path, tmp_path)
    with open_db(db_path) as db:
        db.execute("update tiny set label = 'positive' where label != 'positive'")
    with pytest.raises(review.ReviewNotPossible, match="at least two classes"):
        review_jobs.start_review(db_path, "tiny")
    with pytest.raises(review.ReviewNotPossible, match="mode must be one of quick, thorough"):
        review_jobs.start_review(db_path, "tiny", mode="slow")
    with open_db(db_path) as db:
        assert review_jobs.latest_review(db, "tiny") is None
