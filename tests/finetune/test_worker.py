"""Runs end to end: statuses, metrics, reports and models in SQLite; worker processes that are
cancelled, killed and resumed."""

import os
import signal

import pytest

from devmode import jobs
from devmode.data import ingest, splits
from devmode.db import open_db
from devmode.finetune import worker
from devmode.models import archives, registry, runs
from tests.conftest import tiny_config, wait_for


def create(db_path, config, dataset="tiny"):
    with open_db(db_path) as db:
        return runs.create_run(db, dataset, config)


def get(db_path, run_id):
    with open_db(db_path) as db:
        return runs.get_run(db, run_id)


def test_execute_run_records_everything(tiny_db, tiny_model_dir):
    run = create(tiny_db, tiny_config(tiny_model_dir, epochs=2))
    assert run.status == "queued" and run.split_seed == 42
    lines = []
    assert worker.execute_run(tiny_db, run.id, echo=lines.append) == "completed"
    done = get(tiny_db, run.id)
    assert done.status == "completed" and done.pid is None and done.error is None
    assert done.step == done.total_steps == 2 * 7 and done.epoch == 2
    assert set(done.baseline) == {"majority", "zero_shot"}
    assert done.test["n"] == 18 and done.validation["n"] == 18
    assert done.versions["torch"] and done.started_at <= done.finished_at
    with open_db(tiny_db) as db:
        names = {m["name"] for m in runs.metrics_for_run(db, run.id)}
        model = registry.get_model_for_run(db, run.id)
    assert names == {
        "train_loss",
        "learning_rate",
        "samples_per_second",
        "eval_loss",
        "eval_accuracy",
        "eval_macro_f1",
    }
    assert model.labels == ["negative", "neutral", "positive"] and os.path.isdir(model.path)
    assert any(line.startswith("step 14/14") for line in lines)
    assert (
        list(worker.run_dir(tiny_db, run.id).glob("*.pt")) == []
    )  # checkpoints go once the model is saved


def test_failed_run_keeps_the_error(tiny_db, tiny_model_dir, monkeypatch):
    import huggingface_hub.constants

    # a hub id that cannot be fetched here; the hub client read HF_HUB_OFFLINE when it was
    # imported, so set its constant too (else it retries the network for ~45 s)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    run = create(tiny_db, tiny_config(tiny_model_dir, base_model="no-such-org/no-such-model"))
    with pytest.raises(Exception, match="Could not load the base model"):
        worker.execute_run(tiny_db, run.id)
    failed = get(tiny_db, run.id)
    assert failed.status == "failed" and "Could not load the base model" in failed.error


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"base_model": "."}, "has no config.json"),
        ({"dataset": "nope"}, "No dataset called 'nope'"),
    ],
)
def test_bad_runs_are_refused_before_they_exist(tiny_db, tiny_model_dir, overrides, message):
    with open_db(tiny_db) as db:
        with pytest.raises(Exception, match=message):
            dataset = overrides.pop("dataset", "tiny")
            runs.create_run(db, dataset, tiny_config(tiny_model_dir, **overrides))
        assert runs.list_runs(db) == []


def test_data_that_cannot_train_is_refused_before_a_run_exists(tiny_db, tiny_model_dir):
    with open_db(tiny_db) as db:
        ingest.resplit(db, "tiny", splits.SplitSpec(1.0, 0.0, 0.0))
        with pytest.raises(Exception, match="0 validation and 0 test rows"):
            runs.create_run(db, "tiny", tiny_config(tiny_model_dir))
        assert runs.list_runs(db) == []


def test_cancel_flag_stops_the_run(tiny_db, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(jobs, "CANCEL_POLL_SECONDS", 0.0)
    run = create(tiny_db, tiny_config(tiny_model_dir, epochs=50))

    def cancel_on_step_3(message):
        if message.startswith("step 3/"):
            with open_db(tiny_db) as db:
                runs.request_cancel(db, run.id)

    assert worker.execute_run(tiny_db, run.id, echo=cancel_on_step_3) == "cancelled"
    cancelled = get(tiny_db, run.id)
    assert cancelled.status == "cancelled" and cancelled.step in (3, 4) and cancelled.test is None


def test_a_changed_dataset_is_refused(tiny_db, tiny_model_dir):
    run = create(tiny_db, tiny_config(tiny_model_dir))
    with open_db(tiny_db) as db:
        ingest.resplit(db, "tiny", splits.SplitSpec(0.6, 0.2, 0.2, seed=7))
    with pytest.raises(worker.DatasetChanged, match="changed after run"):
        worker.execute_run(tiny_db, run.id)


def test_unlabelled_dataset_cannot_start_a_run(tiny_db, tiny_model_dir):
    with open_db(tiny_db) as db:
        ingest.set_mapping(db, "tiny", ingest.ColumnMapping("text"))
        with pytest.raises(Exception, match="has no label column"):
            runs.create_run(db, "tiny", tiny_config(tiny_model_dir))


def test_registry_promote_export_delete(tiny_db, tiny_model_dir, tmp_path):
    first = create(tiny_db, tiny_config(tiny_model_dir, epochs=1))
    second = create(tiny_db, tiny_config(tiny_model_dir, epochs=1, seed=1))
    for run in (first, second):
        worker.execute_run(tiny_db, run.id)
    with open_db(tiny_db) as db:
        registry.promote(db, first.id, "sentiment")
        registry.promote(db, second.id, "sentiment")  # takes over from the first
        assert registry.active_model(db, "sentiment").run_id == second.id
        assert [m.active_as for m in registry.list_models(db)] == ["sentiment", None]
        archive = archives.export_zip(db, second.id, tmp_path)
        import zipfile

        names = zipfile.ZipFile(archive).namelist()
        assert f"devmode-run-{second.id}/devmode_model.json" in names
        assert f"devmode-run-{second.id}/model.safetensors" in names
        path = registry.get_model_for_run(db, first.id).path
        registry.delete_model(db, first.id)
        assert not os.path.exists(path)
        with pytest.raises(registry.ModelNotFound):
            registry.get_model_for_run(db, first.id)


def test_worker_process_killed_is_interrupted_then_resumes(tiny_db, tiny_model_dir):
    """kill -9 mid-run: the run says interrupted, resumes from its checkpoint, and completes
    with each step's metrics recorded once."""
    config = tiny_config(
        tiny_model_dir, epochs=12, batch_size=2, early_stopping_patience=0, log_every_steps=5
    )
    run = create(tiny_db, config)
    pid = worker.start_job(tiny_db, run.id)
    with pytest.raises(jobs.JobAlreadyRunning):
        worker.start_job(tiny_db, run.id)
    checkpoint = worker.run_dir(tiny_db, run.id)
    wait_for(lambda: (checkpoint / "last.json").exists())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not jobs.pid_alive(pid), timeout=10)
    with open_db(tiny_db) as db:
        assert runs.reconcile(db) == [run.id]
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    interrupted = get(tiny_db, run.id)
    assert interrupted.status == "interrupted" and "Resume" in interrupted.error

    worker.start_job(tiny_db, run.id)
    final = wait_for(
        lambda: (r := get(tiny_db, run.id)).status in jobs.FINISHED_STATUSES and r, timeout=300
    )
    assert final.status == "completed", final.error
    with open_db(tiny_db) as db:
        losses = [m["step"] for m in runs.metrics_for_run(db, run.id, ["train_loss"])]
    assert losses == sorted(set(losses)) and losses[-1] == final.total_steps
