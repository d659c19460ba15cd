"""The watcher: poll the sources that are due, score their new rows with the active models,
evaluate the alert rules, deliver the alerts; then wait for the next source to be due.

    $ python -m devmode watch              # until stopped (Ctrl-C)
    $ python -m devmode watch --once       # one pass over every due source, then exit

    watcher = start_watching(db_path)      # the Monitor page's *Start watching*: a worker process
    stop_watching(db)                      # it stops after its current pass
    Watcher(db_path).run_pass()            # one pass in this process

A watcher is a job like a training run (``KIND``): one at a time, its status and last
pass in ``devmode_watchers``, re-attached by the page after a reload, marked interrupted when
its process dies. Each poll and each scored chunk is its own transaction, so a watcher killed
at any moment loses and duplicates nothing: the next one polls again.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode import jobs
from devmode.data import feeds, ingest, sources
from devmode.db import open_db, utc_now
from devmode.environment import release_freed_memory
from devmode.errors import in_words
from devmode.models import registry, scorers
from devmode.monitor import alerts, delivery, monitoring

# What a worker process runs: ``python -m devmode job watcher ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="watcher",
    execute="devmode.monitor.watcher:execute_watcher",
    table="devmode_watchers",
    noun="Watcher",
    folder_name="watchers",
    touched_column="updated_at",
    interrupted_message="The watcher process stopped (killed or crashed). Start watching again: "
    "everything it stored is kept, and a poll it was in the middle of is done again.",
    list_command="python -m devmode sources list",
)

# The longest a watcher sleeps between looks at what is due (a source added on the page is
# polled within this), and how often its row says it is alive when nothing happens.
TICK_S = 1.0
HEARTBEAT_S = 30.0
# Seconds before a pass that failed as a whole (not one source: the database itself) is tried again.
RETRY_S = 10.0


@dataclass
class PassSummary:
    """What one pass did."""

    at: str = field(default_factory=utc_now)
    polled: int = 0
    added: int = 0
    scored: int = 0
    new_alerts: int = 0
    delivered: int = 0
    problems: list[str] = field(default_factory=list)  # poll and delivery errors, scoring refusals
    lines: list[str] = field(default_factory=list)  # what a person reads, a line per event

    @property
    def stored_something(self) -> bool:
        """Rows, scores, alerts or deliveries: what a page showing the watcher would redraw."""
        return bool(self.added or self.scored or self.new_alerts or self.delivered)

    @property
    def did_something(self) -> bool:
        return bool(self.stored_something or self.polled or self.problems)


@dataclass(frozen=True)
class WatcherJob(jobs.JobState):
    id: int
    status: str
    pid: int | None
    cancel_requested: bool
    passes: int
    summary: dict[str, Any]
    error: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WatcherJob:
        return cls(
            **{
                **row,
                "summary": json.loads(row["summary"] or "{}"),
                "cancel_requested": bool(row["cancel_requested"]),
            }
        )

    @property
    def changed_at(self) -> str | None:
        """When a pass last stored rows, scores, alerts or deliveries: a page redraws on a change."""
        return self.summary.get("changed_at")

    def describe(self) -> str:
        """'Watching since 12:01 UTC (process 4242): 37 passes, the last at 12:30 ...'."""
        last = self.summary
        latest = (
            f"; last pass {last['at'][11:19]} UTC: {last.get('added', 0):,} new rows, "
            f"{last.get('scored', 0):,} scored, {last.get('new_alerts', 0)} alerts, "
            f"{last.get('delivered', 0)} delivered"
            if last.get("at")
            else ""
        )
        since = (self.started_at or self.created_at)[:16].replace("T", " ")
        if self.is_active:
            return (
                f"Watching since {since} UTC (process {self.pid}): {self.passes:,} passes{latest}."
            )
        ended = (self.finished_at or self.updated_at)[:16].replace("T", " ")
        what = "stopped" if self.status == jobs.CANCELLED else self.status
        error = f" {self.error}" if self.error else ""
        return f"Not watching: the last watcher {what} at {ended} UTC after {self.passes:,} passes.{error}"


class Watcher:
    """Runs passes, keeping each task's loaded model between them (loaded again only when the
    active model changes)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        fetch_timeout: float = feeds.FETCH_TIMEOUT_S,
        delivery_timeout: float = delivery.DELIVERY_TIMEOUT_S,
    ):
        self.db_path = str(db_path)
        self.fetch_timeout = fetch_timeout
        self.delivery_timeout = delivery_timeout
        self._scorers: dict[str, tuple[int, Any]] = {}  # task -> (model id, Scorer)
        self._scored_with: dict[str, int | None] = {}  # task -> model id of the last pass

    def run_pass(self) -> PassSummary:
        """Poll every due source, score what is new, evaluate rules, deliver what is due.

        Nothing one source, dataset or delivery does stops the others: a failure is recorded
        (in the source's health, the delivery log) and named in the summary's problems.
        """
        summary = PassSummary()
        with open_db(self.db_path) as db:
            for source in sources.due_sources(db):
                try:
                    result = sources.poll_source(db, source.id, timeout=self.fetch_timeout)
                except Exception as e:  # noqa: BLE001 - even recording the failure failed
                    summary.problems.append(f"Source {source.id}: not polled ({in_words(e)}).")
                    continue
                summary.polled += 1
                summary.added += result.added
                (summary.problems if result.error else summary.lines).append(result.describe())
            for name in self._to_score(db, summary):
                self._score(db, name, summary)
            if summary.scored:
                release_freed_memory()  # a day of passes would otherwise grow the heap
            try:
                delivered = delivery.deliver_due(db, timeout=self.delivery_timeout)
            except Exception as e:  # noqa: BLE001 - the next pass tries again
                summary.problems.append(f"Alerts not delivered this pass ({in_words(e)}).")
                delivered = []
            for outcome in delivered:
                done = outcome.status == alerts.Delivery.DELIVERED
                summary.delivered += done
                (summary.lines if done else summary.problems).append(outcome.describe())
        return summary

    def _to_score(self, db: Database, summary: PassSummary) -> list[str]:
        """Watched datasets with rows to score: all of them on the first pass or when an active
        model changed, else those that got new rows."""
        models = {
            task: getattr(registry.active_model(db, task), "id", None) for task in registry.TASKS
        }
        changed = models != self._scored_with
        self._scored_with = models
        if not changed and not summary.added:
            return []
        watched = {s.dataset.lower() for s in sources.list_sources(db)}
        return [name for name in ingest.dataset_names(db) if name.lower() in watched]

    def _score(self, db: Database, dataset: str, summary: PassSummary) -> None:
        for task in ("topic", "sentiment"):  # topics first: sentiment rows carry them
            model = registry.active_model(db, task)
            if model is None:
                continue
            try:
                result = monitoring.score_dataset(
                    db, dataset, task=task, scorer=self._scorer(db, task, model)
                )
            except Exception as e:  # noqa: BLE001 - the other datasets are scored all the same
                summary.problems.append(
                    f"{dataset}: not scored with the {task} model: {in_words(e)}"
                )
                continue
            summary.scored += result.scored
            summary.new_alerts += result.new_alerts
            if result.scored:
                summary.lines.append(
                    f"{dataset}: {result.scored:,} rows scored with the {task} model"
                    + (f", {result.new_alerts} new alerts." if result.new_alerts else ".")
                )

    def _scorer(self, db: Database, task: str, model: registry.Model):
        loaded = self._scorers.get(task)
        if loaded is None or loaded[0] != model.id:
            # a watcher scores what its feeds bring, a few texts a poll: it takes the form a
            # scoring job chose, else fp32, and does not time every form itself
            self._scorers[task] = (model.id, scorers.model_scorer(db, model, texts=0))
        return self._scorers[task][1]

    def run(
        self,
        *,
        should_stop: Callable[[], bool],
        on_pass: Callable[[PassSummary], None] | None = None,
    ) -> int:
        """Pass after pass until ``should_stop()``; returns the number of passes."""
        passes = 0
        while not should_stop():
            try:
                summary = self.run_pass()
                wait = self._wait_s()
            except Exception as e:  # noqa: BLE001 - the database busy for minutes, a disk full:
                summary = PassSummary(problems=[f"The pass failed ({in_words(e)}); trying again."])
                wait = RETRY_S  # the watcher waits and tries again, it does not end
            passes += 1
            if on_pass:
                on_pass(summary)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not should_stop():
                time.sleep(min(0.2, TICK_S))
        return passes

    def _wait_s(self) -> float:
        """Until the next source is due, at most ``TICK_S`` (new sources, retries, stops)."""
        with open_db(self.db_path) as db:
            due = sources.next_due_at(db)
        if due is None or due == "":
            return 0.0 if due == "" else TICK_S
        wait = (dt.datetime.fromisoformat(due) - dt.datetime.now(dt.UTC)).total_seconds()
        return max(0.0, min(wait, TICK_S))


# ----------------------------------------------------------------------------------------------
# The watcher as a job


def create_watcher(db: Database) -> WatcherJob:
    """A queued watcher; refused while another is watching (checked and stored together)."""
    with db.atomic():
        refuse_while_watching(db)
        stamp = utc_now()
        watcher_id = (
            db["devmode_watchers"]
            .insert({"status": jobs.QUEUED, "created_at": stamp, "updated_at": stamp})
            .last_pk
        )
    return get_watcher(db, watcher_id)


def refuse_while_watching(db: Database) -> None:
    """Raise ``JobAlreadyRunning``, naming the watcher, while one is watching: there is one
    watcher at a time (a second would poll, score and deliver everything twice)."""
    running = current_watcher(db)
    if running and running.is_active:
        raise jobs.JobAlreadyRunning(
            f"Watcher {running.id} is already watching (process {running.pid}). Stop it first "
            "(python -m devmode watch --stop): there is one watcher at a time."
        )


def run_once(db_path: str | Path) -> PassSummary:
    """``watch --once``: one pass in this process, refused while a watcher is watching."""
    with open_db(db_path) as db:
        refuse_while_watching(db)
    return Watcher(db_path).run_pass()


def get_watcher(db: Database, watcher_id: int) -> WatcherJob:
    return WatcherJob.from_row(jobs.get_row(db, KIND, watcher_id))


def current_watcher(db: Database) -> WatcherJob | None:
    """The newest watcher (after marking dead ones interrupted), or None if none ever ran."""
    jobs.reconcile(db, KIND)
    row = next(db["devmode_watchers"].rows_where(order_by="id desc", limit=1), None)
    return WatcherJob.from_row(row) if row else None


def start_watching(db_path: str | Path) -> WatcherJob:
    """*Start watching*: a watcher in a worker process of its own (it outlives the page)."""
    with open_db(db_path) as db:
        watcher = create_watcher(db)
    try:
        jobs.start(db_path, KIND, watcher.id)
    except BaseException as e:
        with open_db(db_path) as db:
            jobs.set_status(db, KIND, watcher.id, jobs.FAILED, error=jobs.error_message(e))
        raise
    with open_db(db_path) as db:
        return get_watcher(db, watcher.id)


def stop_watching(db: Database) -> WatcherJob | None:
    """Ask the running watcher to stop after its current pass; None when none is running."""
    watcher = current_watcher(db)
    if watcher is None or not watcher.is_active:
        return None
    jobs.request_cancel(db, KIND, watcher.id)
    return get_watcher(db, watcher.id)


def execute_watcher(
    db_path: str | Path,
    watcher_id: int,
    *,
    echo: Callable[[str], None] | None = None,
    watcher: Watcher | None = None,
) -> WatcherJob:
    """Watch in this process until asked to stop (or Ctrl-C), recording every pass."""
    watcher = watcher or Watcher(db_path)
    with jobs.claimed(db_path, KIND, watcher_id) as db:
        should_stop = jobs.CancelPoll(db, KIND, watcher_id)
        last_write = 0.0
        passes = 0
        changed_at = None  # when a pass last stored something a page would draw

        def record(summary: PassSummary) -> None:
            # a pass runs every second or so: the row is written when a pass did something,
            # and otherwise once per HEARTBEAT_S, not once per pass
            nonlocal last_write, passes, changed_at
            passes += 1
            for line in summary.lines + summary.problems:
                if echo:
                    echo(line)
            if summary.stored_something:
                changed_at = summary.at
            if summary.did_something or time.monotonic() - last_write > HEARTBEAT_S:
                stored = {**asdict(summary), "changed_at": changed_at}
                try:
                    db.execute(
                        "update devmode_watchers set passes = ?, summary = ?, updated_at = ? "
                        "where id = ?",
                        [passes, json.dumps(stored), utc_now(), watcher_id],
                    )
                except sqlite3.OperationalError:  # busy beyond the wait: the next pass writes
                    return
                last_write = time.monotonic()

        watcher.run(should_stop=should_stop, on_pass=record)
        jobs.set_status(db, KIND, watcher_id, jobs.CANCELLED, pid=None, passes=passes)
        return get_watcher(db, watcher_id)
