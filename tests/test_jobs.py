"""One job runner for training runs and scoring jobs: starting is atomic, so two quick clicks
(two sessions, two processes) start one worker; a second identical start is refused."""

import threading
import time

import pytest

from devmode import jobs
from devmode.db import open_db
from devmode.finetune import worker
from devmode.models import runs
from devmode.monitor import score_jobs
from tests.conftest import tiny_config


def at_once(calls):
    """Run the calls in threads released together; their results (or errors), in call order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - the error is the result here
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.fixture
def slow_spawn(monkeypatch):
    """Spawning takes a while (a loaded machine): without the write lock, both starts would
    check before either had stored its worker."""
    spawn = jobs.spawn_worker

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return spawn(*args, **kwargs)

    monkeypatch.setattr(jobs, "spawn_worker", slow)


def stop(db_path, kind, job_id):
    with open_db(db_path) as db:
        jobs.request_cancel(db, kind, job_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open_db(db_path) as db:
            row = jobs.get_row(db, kind, job_id)
        if row["status"] not in jobs.ACTIVE_STATUSES:
            return row
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not stop")


def test_two_starts_at_once_spawn_one_worker(tiny_db, tiny_model_dir, slow_spawn):
    with open_db(tiny_db) as db:
        run = runs.create_run(
            db, "tiny", tiny_config(tiny_model_dir, epochs=50, early_stopping_patience=0)
        )
    results = at_once([lambda: worker.start_job(tiny_db, run.id)] * 2)
    pids = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, jobs.JobAlreadyRunning)]
    assert len(pids) == 1 and len(refused) == 1, results
    with open_db(tiny_db) as db:
        assert runs.get_run(db, run.id).pid == pids[0]
    assert stop(tiny_db, runs.KIND, run.id)["status"] == "cancelled"


def test_a_second_start_of_the_same_settings_is_refused(tiny_db, tiny_model_dir, slow_spawn):
    config = tiny_config(tiny_model_dir, epochs=50, early_stopping_patience=0)
    results = at_once([lambda: worker.start_run(tiny_db, "tiny", config)] * 2)
    started = [r for r in results if isinstance(r, runs.Run)]
    refused = [r for r in results if isinstance(r, jobs.JobAlreadyRunning)]
    assert len(started) == 1 and len(refused) == 1, results
    assert "is already training these settings on tiny" in str(refused[0])
    with open_db(tiny_db) as db:
        assert [r.id for r in runs.list_runs(db)] == [started[0].id]
    stop(tiny_db, runs.KIND, started[0].id)
    # once it has stopped, the same settings may train again
    again = worker.start_run(tiny_db, "tiny", config)
    stop(tiny_db, runs.KIND, again.id)


def test_two_score_clicks_make_one_job(news_db, slow_spawn):
    results = at_once([lambda: score_jobs.start_scoring(news_db, "news")] * 2)
    started = [r for r in results if isinstance(r, score_jobs.ScoreJob)]
    refused = [r for r in results if isinstance(r, jobs.JobAlreadyRunning)]
    assert len(started) == 1 and len(refused) == 1, results
    with open_db(news_db) as db:
        assert db["devmode_score_jobs"].count == 1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open_db(news_db) as db:
            job = score_jobs.get_job(db, started[0].id)
        if not job.is_active:
            break
        time.sleep(0.2)
    assert job.status == "completed", job.error


def test_a_queued_job_without_a_worker_is_cancelled_at_once(tiny_db, tiny_model_dir):
    with open_db(tiny_db) as db:
        run = runs.create_run(db, "tiny", tiny_config(tiny_model_dir))
        assert runs.request_cancel(db, run.id).status == "cancelled"


def test_a_job_cancelled_while_its_worker_starts_ends_before_loading_anything(
    tiny_db, tiny_model_dir
):
    import dataclasses
    import os

    with open_db(tiny_db) as db:
        run = runs.create_run(db, "tiny", tiny_config(tiny_model_dir))
        jobs.set_status(db, runs.KIND, run.id, jobs.QUEUED, pid=os.getpid())  # a worker starting
        jobs.request_cancel(db, runs.KIND, run.id)
    said = []
    # a kind whose work cannot even be imported: the worker must stop before it tries
    unloadable = dataclasses.replace(runs.KIND, execute="devmode.no_such_module:run")
    jobs.execute(unloadable, tiny_db, run.id, echo=said.append)
    assert said == [f"Run {run.id} was cancelled before it started."]
    with open_db(tiny_db) as db:
        row = jobs.get_row(db, runs.KIND, run.id)
    assert row["status"] == jobs.CANCELLED and row["pid"] is None


def test_statuses_are_one_set_of_constants():
    assert set(jobs.ACTIVE_STATUSES) | set(jobs.FINISHED_STATUSES) == set(jobs.STATUSES)
    assert set(jobs.RESUMABLE_STATUSES) < set(jobs.FINISHED_STATUSES)
    assert jobs.COMPLETED not in jobs.RESUMABLE_STATUSES
