"""One runner for every background job: training runs and scoring jobs share their statuses,
their worker process, liveness, reconcile, cancel and failure recording.

    pid = start(db_path, TRAINING, run_id)      # a worker process; a second click is refused
    with claimed(db_path, TRAINING, run_id) as (db, job):   # in the worker: running, with our pid
        stop = CancelPoll(db, TRAINING, run_id)             # stop() -> the row's cancel flag, polled
        ...                                                 # an error is recorded: failed / cancelled
    reconcile(db, TRAINING)                     # jobs whose worker died become interrupted

A job is a row in its own table (``devmode_runs``, ``devmode_score_jobs``, ``devmode_watchers``)
with ``status``, ``pid``, ``cancel_requested``, ``error``, ``started_at`` and ``finished_at``; SQLite is the only
channel between a worker and the pages, so a page that reloads reads what the worker writes.
A worker outlives the page that started it: reloads and Streamlit restarts do not touch it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from devmode import environment, launcher
from devmode.db import open_db, utc_now
from devmode.errors import DevmodeError

# queued: stored, its worker not yet at work; interrupted: the worker died without saying so.
QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATUSES = (QUEUED, RUNNING)
FINISHED_STATUSES = (COMPLETED, FAILED, CANCELLED, INTERRUPTED)
# What "resume" continues: the work done so far is kept (checkpoints, whole chunks).
RESUMABLE_STATUSES = (INTERRUPTED, CANCELLED, FAILED)
# How often a worker looks at its row for a cancel request (a read per poll, not per step).
CANCEL_POLL_SECONDS = 1.0
# Workers this process started; polled so that finished ones are reaped, not left as zombies.
_children: list[subprocess.Popen] = []


class JobAlreadyRunning(DevmodeError):
    """The job already has a live worker."""


class JobNotFound(DevmodeError):
    """No job of that kind has that id."""


class JobNotResumable(DevmodeError):
    """The job has completed, or is still running: there is nothing to resume."""


class JobState:
    """What a job's record (a run, a scoring job) says about itself, from its ``status``."""

    status: str

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def is_resumable(self) -> bool:
        return self.status in RESUMABLE_STATUSES

    @property
    def is_interrupted(self) -> bool:
        """Its worker died: its error is a warning (resume goes on), not a failure."""
        return self.status == INTERRUPTED


def fraction(done: int, total: int) -> float:
    """How much of a job is done, from 0 to 1 (0 before it knows its total)."""
    return min(1.0, done / total) if total else 0.0


@dataclass(frozen=True)
class JobRecord(JobState):
    """The columns every job table with a done / total count shares (evaluations, adaptations,
    label reviews, suite runs); each kind's record adds its own."""

    id: int
    status: str
    pid: int | None
    cancel_requested: int
    error: str | None
    done: int
    total: int
    created_at: str
    updated_at: str | None
    started_at: str | None
    finished_at: str | None

    @property
    def fraction_done(self) -> float:
        return fraction(self.done, self.total)


@dataclass(frozen=True)
class JobKind:
    """One kind of job: where its rows live, what its worker runs, how it is named. Each
    capability declares its own kinds; ``python -m devmode job NAME ID`` runs one."""

    name: str  # "training": what ``python -m devmode job NAME ID`` calls it
    execute: str  # "devmode.finetune.worker:execute_run": fn(db_path, job_id, *, echo)
    table: str  # its rows: id, status, pid, cancel_requested, error, started_at, finished_at
    noun: str  # "Run", "Scoring job": how messages name one
    folder_name: str  # its folders (worker log, checkpoints) under the database's files folder
    touched_column: str  # stamped on every status change (a heartbeat of sorts)
    interrupted_message: str  # what a person reads when its worker died
    list_command: str  # how a person lists them, for "no such job"

    def folder(self, db_path: str | Path, job_id: int) -> Path:
        """The job's own folder: its worker's log, and for training runs its checkpoints."""
        prefix = "run" if self.folder_name == "runs" else "job"
        return environment.files_dir(db_path) / self.folder_name / f"{prefix}-{job_id}"


def get_row(db: Database, kind: JobKind, job_id: int) -> dict[str, Any]:
    try:
        return db[kind.table].get(job_id)
    except NotFoundError:
        raise JobNotFound(
            f"No {kind.noun.lower()} with id {job_id}. See them with {kind.list_command}."
        ) from None


def check_resumable(kind: JobKind, job: JobState) -> None:
    """Refuse to resume a job that is not interrupted, cancelled or failed."""
    if not job.is_resumable:
        raise JobNotResumable(
            f"{kind.noun} {job.id} is {job.status}; only interrupted, cancelled or failed "
            f"{kind.noun.lower()}s resume."
        )


def set_status(db: Database, kind: JobKind, job_id: int, status: str, **values: Any) -> None:
    """Move a job to ``status``: running stamps ``started_at`` and clears the last error and
    finish; a finished status stamps ``finished_at``; every change stamps the kind's heartbeat."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    stamp = utc_now()
    values.setdefault(kind.touched_column, stamp)
    if status == RUNNING:
        values.setdefault("started_at", stamp)
        values.setdefault("finished_at", None)
        values.setdefault("error", None)
    elif status in FINISHED_STATUSES:
        values.setdefault("finished_at", stamp)
    db[kind.table].update(job_id, {"status": status, **values})


def reconcile(db: Database, kind: JobKind) -> list[int]:
    """Mark jobs whose worker process is gone as ``interrupted``; returns their ids.

    Called whenever jobs are listed or started, so a killed worker (kill -9, a reboot) never
    leaves a job that claims to be running.
    """
    gone = [
        row["id"]
        for row in db[kind.table].rows_where(
            f"status in ({', '.join('?' * len(ACTIVE_STATUSES))}) and pid is not null",
            list(ACTIVE_STATUSES),
            select="id, pid",
        )
        if not pid_alive(row["pid"])
    ]
    for job_id in gone:
        set_status(db, kind, job_id, INTERRUPTED, pid=None, error=kind.interrupted_message)
    return gone


def request_cancel(db: Database, kind: JobKind, job_id: int) -> None:
    """Ask the job's worker to stop after its current step or chunk (it polls the flag); a job
    that was never given a worker (queued, no process) is cancelled at once."""
    row = get_row(db, kind, job_id)
    if row["status"] not in ACTIVE_STATUSES:
        return
    if row["pid"]:
        db[kind.table].update(job_id, {"cancel_requested": 1})
    else:
        set_status(db, kind, job_id, CANCELLED, pid=None)


class CancelPoll:
    """``should_stop()`` for a worker's loop: True once the job's cancel flag is set (or
    ``also()`` says so), reading the row at most once per ``CANCEL_POLL_SECONDS``."""

    def __init__(
        self, db: Database, kind: JobKind, job_id: int, also: Callable[[], bool] | None = None
    ):
        self.db, self.kind, self.job_id, self.also = db, kind, job_id, also
        self._last_poll = 0.0

    def __call__(self) -> bool:
        if self.also and self.also():
            return True
        if time.monotonic() - self._last_poll < CANCEL_POLL_SECONDS:
            return False
        self._last_poll = time.monotonic()
        row = self.db.execute(
            f"select cancel_requested from {self.kind.table} where id = ?", [self.job_id]
        ).fetchone()
        return bool(row and row[0])


@contextmanager
def claimed(db_path: str | Path, kind: JobKind, job_id: int, **values: Any) -> Iterator[Database]:
    """Run a job in this process: mark it running with this pid (``values`` are stored with
    it), yield the database, and record how it ends when it raises: Ctrl-C is
    ``cancelled``, anything else ``failed`` with its message; the error is raised again.
    The body records success itself (it knows the figures to store).

    :raises JobAlreadyRunning: another live process is running it
    :raises DevmodeError: it has already completed
    """
    with open_db(db_path) as db:
        with db.atomic():
            row = get_row(db, kind, job_id)
            if row["status"] == RUNNING and row["pid"] != os.getpid() and pid_alive(row["pid"]):
                raise JobAlreadyRunning(
                    f"{kind.noun} {job_id} is already running (process {row['pid']})."
                )
            if row["status"] == COMPLETED:
                raise DevmodeError(
                    f"{kind.noun} {job_id} has already completed; start a new one to do it again."
                )
            # a cancel asked for while it was queued still counts; one from an earlier attempt
            # (a cancelled job resumed in the foreground) does not
            keep_cancel = row["status"] == QUEUED and bool(row["cancel_requested"])
            set_status(
                db,
                kind,
                job_id,
                RUNNING,
                pid=os.getpid(),
                cancel_requested=int(keep_cancel),
                **values,
            )
        try:
            yield db
        except KeyboardInterrupt:
            set_status(db, kind, job_id, CANCELLED, pid=None)
            raise
        except BaseException as e:
            set_status(db, kind, job_id, FAILED, pid=None, error=error_message(e))
            raise


def error_message(e: BaseException) -> str:
    """What a person reads about a failure: devmode's own message, else the error's type and text."""
    return str(e) if isinstance(e, DevmodeError) else f"{type(e).__name__}: {e}"


def execute(kind: JobKind, db_path: str | Path, job_id: int, echo: Callable[[str], None]) -> None:
    """Run job ``job_id`` of ``kind`` in this process: what its worker does. A job cancelled
    while its worker was starting ends here, before the worker loads its libraries (torch and
    the model take seconds)."""
    with open_db(db_path) as db, db.atomic():
        row = get_row(db, kind, job_id)
        cancelled = row["status"] == QUEUED and bool(row["cancel_requested"])
        if cancelled:
            set_status(db, kind, job_id, CANCELLED, pid=None)
    if cancelled:
        echo(f"{kind.noun} {job_id} was cancelled before it started.")
        return
    module, _, function = kind.execute.partition(":")
    getattr(importlib.import_module(module), function)(db_path, job_id, echo=echo)


def start(db_path: str | Path, kind: JobKind, job_id: int) -> int:
    """Start (or resume) job ``job_id`` in a worker process and return its pid; the caller does
    not wait. Checking and spawning happen in one write transaction, so two quick clicks (two
    sessions, two processes) start one worker: the second waits for the first, then sees it.

    :raises JobAlreadyRunning: if the job's worker is alive
    """
    db_path = str(Path(db_path).resolve())
    with open_db(db_path) as db, db.atomic():
        reconcile(db, kind)
        row = get_row(db, kind, job_id)
        if row["status"] in ACTIVE_STATUSES and pid_alive(row["pid"]):
            raise JobAlreadyRunning(
                f"{kind.noun} {job_id} is already running (process {row['pid']}). Cancel it "
                "first, or wait."
            )
        pid = spawn_worker(db_path, ["job", kind.name, str(job_id)], kind.folder(db_path, job_id))
        set_status(db, kind, job_id, QUEUED, pid=pid, cancel_requested=0, error=None)
    return pid


def spawn_worker(db_path: str | Path, arguments: list[str], folder: Path) -> int:
    """Start ``python -m devmode --db DB_PATH ARGUMENTS...`` in its own session, logging to
    ``folder/worker.log``, and return its pid once the new program runs (so it is a devmode
    process), without waiting for it: forked by a warm launcher (``launcher.py``) when one
    answers, else a new process."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["--db", str(db_path), *arguments]
    root, log = Path(__file__).resolve().parents[1], folder / "worker.log"
    pid = launcher.launch(command, log, root, dict(os.environ))
    if pid is not None:
        return pid
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devmode", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or restart of the server does not kill it
            cwd=root,
        )
    _children[:] = [child for child in _children if child.poll() is None]
    _children.append(process)
    return process.pid


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
