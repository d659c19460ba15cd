"""Run a stored training run, in the foreground (CLI) or in its own process (pages).

    $ python -m devmode train phrasebank --epochs 3          # foreground, prints progress
    start_job(db_path, run_id)                               # background: a worker process

A worker process outlives the page that started it: reloads, disconnects and Streamlit reruns
do not touch it, and the GPU memory is freed when it ends. Cancel is a flag in the run's row;
a killed worker leaves its run ``interrupted`` and resumable from the last epoch's checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devmode import config as settings
from devmode import ingest, models, runs, trainset
from devmode.db import open_db
from devmode.errors import DevmodeError

# How often the loop's should_stop() looks at the database for a cancel request.
CANCEL_POLL_SECONDS = 1.0
# Workers this process started; polled so that finished ones are reaped, not left as zombies.
_children: list[subprocess.Popen] = []


class DatasetChanged(DevmodeError):
    """The dataset was replaced or re-split after the run was created."""


def run_dir(db_path: str | Path, run_id: int) -> Path:
    """Checkpoints and the worker's log of one run."""
    return settings.files_dir(db_path) / "runs" / f"run-{run_id}"


def model_dir(db_path: str | Path, run_id: int) -> Path:
    return models.models_dir(settings.files_dir(db_path)) / f"run-{run_id}"


def load_training_data(db, run: runs.Run):
    """The run's dataset as ``TrainData``, checked against the hash and split seed the run pinned."""
    dataset = ingest.get_dataset(db, run.dataset)
    if (dataset.sha256, dataset.split.seed) != (run.dataset_sha256, run.split_seed):
        raise DatasetChanged(
            f"Dataset {run.dataset!r} changed after run {run.id} was created (its file hash or "
            "split seed differ), so the run could not be compared with its own baseline. Start "
            "a new run on the dataset as it is now."
        )
    return trainset.load_examples(db, dataset.name)


def execute_run(
    db_path: str | Path,
    run_id: int,
    *,
    echo: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Train run ``run_id``, recording progress, reports and the final status. Returns the status.

    Resumes from the run's checkpoint when there is one (an interrupted or cancelled run).
    Errors are recorded on the run (``failed``) and raised again.
    """
    from devmode import training

    with open_db(db_path) as db:
        run = runs.get_run(db, run_id)
        if run.status == "running" and runs.pid_alive(run.pid) and run.pid != os.getpid():
            raise runs.JobAlreadyRunning(f"Run {run_id} is already running (process {run.pid}).")
        if run.status == "completed":
            raise DevmodeError(
                f"Run {run_id} has already completed; start a new run to train again."
            )
        runs.set_status(
            db,
            run_id,
            "running",
            pid=os.getpid(),
            cancel_requested=0,
            versions=runs.library_versions(),
        )
        runs.clear_metrics_after(db, run_id, _checkpoint_step(db_path, run_id))
        try:
            data = load_training_data(db, run)
            training.check_data(data)
            if run.baseline is None:
                _say(
                    echo,
                    "Scoring the baselines (majority class, zero-shot base model) on the test split",
                )
                baseline = {
                    "majority": training.majority_report(data),
                    "zero_shot": training.zero_shot_report(run.config, data),
                }
                runs.set_status(db, run_id, "running", baseline=baseline)

            last_poll = [0.0]

            def stop_requested() -> bool:
                if should_stop and should_stop():
                    return True
                if time.monotonic() - last_poll[0] < CANCEL_POLL_SECONDS:
                    return False
                last_poll[0] = time.monotonic()
                return bool(
                    db.execute(
                        "select cancel_requested from devmode_runs where id = ?", [run_id]
                    ).fetchone()[0]
                )

            def report(p: training.Progress) -> None:
                runs.record_progress(db, run_id, p.step, p.total_steps, p.epoch, p.metrics)
                _say(
                    echo,
                    f"step {p.step}/{p.total_steps} epoch {p.epoch} "
                    + " ".join(f"{k}={v:.4g}" for k, v in p.metrics.items()),
                )

            result = training.train(
                run.config,
                data,
                output_dir=model_dir(db_path, run_id),
                checkpoint_dir=run_dir(db_path, run_id),
                on_progress=report,
                should_stop=stop_requested,
            )
        except BaseException as e:
            status = "cancelled" if isinstance(e, KeyboardInterrupt) else "failed"
            message = str(e) if isinstance(e, DevmodeError) else f"{type(e).__name__}: {e}"
            runs.set_status(
                db, run_id, status, pid=None, error=None if status == "cancelled" else message
            )
            raise
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
        if result.status == "cancelled":
            runs.set_status(db, run_id, "cancelled", pid=None, **figures)
            return "cancelled"
        with db.atomic():
            models.register_model(db, run_id, run.dataset, result.labels, result.output_dir)
            runs.set_status(
                db, run_id, "completed", pid=None, model_dir=result.output_dir, **figures
            )
        # the saved model is what stays; resume checkpoints (weights + optimizer state) do not
        for checkpoint in run_dir(db_path, run_id).glob("*.pt"):
            checkpoint.unlink()
        _say(
            echo,
            f"Test accuracy {result.test['accuracy']:.3f}, macro-F1 {result.test['macro_f1']:.3f}",
        )
        return "completed"


def follow_run(db_path: str | Path, run_id: int) -> None:
    """Train run ``run_id`` as a non-main process under accelerate launch / torchrun.

    It reads the run and its data but writes nothing: the main process (``execute_run``)
    records progress, checkpoints and saves the model.
    """
    from devmode import training

    with open_db(db_path) as db:
        run = runs.get_run(db, run_id)
        data = load_training_data(db, run)
    training.train(run.config, data, checkpoint_dir=run_dir(db_path, run_id))


def start_job(db_path: str | Path, run_id: int) -> int:
    """Start a worker process for run ``run_id`` and return its pid; the caller does not wait.

    :raises JobAlreadyRunning: if the run's worker is alive
    """
    db_path = str(Path(db_path).resolve())
    with open_db(db_path) as db:
        runs.reconcile(db)
        run = runs.get_run(db, run_id)
        if run.is_active and runs.pid_alive(run.pid):
            raise runs.JobAlreadyRunning(
                f"Run {run_id} is already running (process {run.pid}). Cancel it first, or wait."
            )
        process = spawn_worker(db_path, ["worker", str(run_id)], run_dir(db_path, run_id))
        runs.set_status(db, run_id, "queued", pid=process.pid, cancel_requested=0, error=None)
    return process.pid


def spawn_worker(db_path: str | Path, arguments: list[str], folder: Path) -> subprocess.Popen:
    """Start ``python -m devmode --db DB_PATH ARGUMENTS...`` in its own session, logging to
    ``folder/worker.log``; the caller does not wait for it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devmode", "--db", str(db_path), *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or restart of the server does not kill it
            cwd=Path(__file__).resolve().parents[1],
        )
    _children[:] = [child for child in _children if child.poll() is None]
    _children.append(process)
    return process


def _checkpoint_step(db_path, run_id) -> int:
    """The step the run's last checkpoint was taken at (0 when there is none)."""
    from devmode import training

    position = training.checkpoint_position(run_dir(db_path, run_id))
    return position["step"] if position else 0


def _say(echo, message: str) -> None:
    if echo:
        echo(message)
