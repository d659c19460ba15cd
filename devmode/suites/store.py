"""Suites and their runs in SQLite: a suite is kept by name; each run keeps the suite as it ran
and one row per reply (cell x repeat) with its checks.

    suite_id = save_suite(db, suite)            # a new suite, or the new version of one
    run = create_run(db, suite)                 # queued; runner.execute_run does the work
    results(db, run.id)                         # the replies so far, each with its checks
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from devmode import jobs
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.suites.suite import Suite

SUITES = "devmode_suites"
RESULTS = "devmode_suite_results"
# A reply's outcome: every check passed, one failed, or nothing to judge (the endpoint or the
# grader failed; asked again on resume, left out of pass rates).
PASS, FAIL, ERROR = "pass", "fail", "error"
# What a worker process runs: ``python -m devmode job suite ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="suite",
    execute="devmode.suites.runner:execute_run",
    table="devmode_suite_runs",
    noun="Suite run",
    folder_name="suite-runs",
    touched_column="updated_at",
    interrupted_message="The suite's process stopped without finishing (killed or crashed). "
    "Resume it: the replies already checked are kept.",
    list_command="python -m devmode bench runs",
)


class SuiteNotFound(DevmodeError):
    """No suite has that name."""


@dataclass(frozen=True)
class SuiteRun(jobs.JobRecord):
    suite_id: int
    suite: str
    spec: dict[str, Any]
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SuiteRun:
        return cls(
            **{
                **row,
                "spec": json.loads(row["spec"]),
                "summary": json.loads(row["summary"]) if row["summary"] else None,
            }
        )

    def progress_text(self) -> str:
        """'Suite run 4: 12 of 240 replies, about 3 min left'."""
        text = f"Suite run {self.id}: {self.done} of {self.total} replies"
        left = self.seconds_left()
        if left is not None:
            text += f", about {_duration(left)} left"
        return text

    def seconds_left(self) -> float | None:
        """From the pace so far (None before the first reply, or once finished)."""
        if not self.is_active or not self.done or not self.started_at:
            return None
        started = dt.datetime.fromisoformat(self.started_at)
        elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def as_suite(self) -> Suite:
        return Suite.from_dict(self.spec)

    @property
    def rescored_from(self) -> int | None:
        """The run whose stored replies this run checked again (``bench rescore``), or None."""
        return (self.summary or {}).get("rescored_from")

    def label(self) -> str:
        """'run 4 of bond-basics (completed, 22 of 24 passed)', '... rescored from run 3'."""
        text = f"run {self.id} of {self.suite} ({self.status}"
        if self.summary:
            text += f", {self.summary['passed']} of {self.summary['cells']} cells passed"
        if self.rescored_from:
            text += f", rescored from run {self.rescored_from}"
        return text + ")"


def save_suite(db: Database, suite: Suite) -> int:
    """Store ``suite`` under its name (replacing the suite of that name: runs keep their own
    copy); returns its id."""
    now = utc_now()
    with db.atomic():
        found = list(db[SUITES].rows_where("name = ?", [suite.name], select="id"))
        spec = json.dumps(suite.to_dict())
        if found:
            db[SUITES].update(found[0]["id"], {"spec": spec, "updated_at": now})
            return found[0]["id"]
        return (
            db[SUITES]
            .insert({"name": suite.name, "spec": spec, "created_at": now, "updated_at": now})
            .last_pk
        )


def find_suite(db: Database, name: str) -> Suite | None:
    """The suite saved under ``name``, as it is now, or None."""
    found = list(db[SUITES].rows_where("name = ?", [name], select="spec"))
    return Suite.from_dict(json.loads(found[0]["spec"])) if found else None


def get_suite(db: Database, name: str) -> Suite:
    found = list(db[SUITES].rows_where("name = ?", [name], select="spec"))
    if not found:
        known = ", ".join(suite_names(db)) or "none yet"
        raise SuiteNotFound(
            f"No suite named {name!r} (stored: {known}). Import one with python -m devmode "
            "bench import FILE, or build one on the Chat sandbox's Suites tab."
        )
    return Suite.from_dict(json.loads(found[0]["spec"]))


def suite_names(db: Database) -> list[str]:
    return [row["name"] for row in db[SUITES].rows_where(select="name", order_by="name")]


def create_run(db: Database, suite: Suite, suite_id: int | None = None) -> SuiteRun:
    """A queued run of ``suite`` (stored first, under its name), with the suite as it is now;
    or, given ``suite_id`` (a rescore: the run's own suite), under that one, saving nothing."""
    with db.atomic():
        suite_id = suite_id if suite_id is not None else save_suite(db, suite)
        now = utc_now()
        run_id = (
            db[KIND.table]
            .insert(
                {
                    "suite_id": suite_id,
                    "suite": suite.name,
                    "spec": json.dumps(suite.to_dict()),
                    "status": jobs.QUEUED,
                    "total": suite.size,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            .last_pk
        )
    return get_run(db, run_id)


def get_run(db: Database, run_id: int) -> SuiteRun:
    return SuiteRun.from_row(jobs.get_row(db, KIND, run_id))


def list_runs(db: Database, suite: str | None = None) -> list[SuiteRun]:
    """Runs, newest first (of one suite, by name, when given)."""
    jobs.reconcile(db, KIND)
    where, args = ("suite = ?", [suite]) if suite else (None, [])
    return [
        SuiteRun.from_row(row) for row in db[KIND.table].rows_where(where, args, order_by="id desc")
    ]


def run_labels(runs: list[SuiteRun]) -> dict[int, str]:
    """Run id -> 'run 4 of bond-basics (completed, ...)', for a select box."""
    return {run.id: run.label() for run in runs}


def finished_runs(runs: list[SuiteRun]) -> list[SuiteRun]:
    """The runs that went to the end (completed, or failed with replies missing)."""
    return [run for run in runs if run.summary is not None]


def results(db: Database, run_id: int) -> list[dict[str, Any]]:
    """The replies of a run, in the order they were asked for, their checks decoded."""
    rows = db[RESULTS].rows_where("run_id = ?", [run_id], order_by="id")
    return [{**row, "checks": json.loads(row["checks"])} for row in rows]


def add_result(db: Database, run_id: int, row: dict[str, Any]) -> None:
    """Store one reply and its checks, and count it done, in one transaction (a reply is kept
    whole or not at all); an earlier attempt at the same reply (an error) is replaced."""
    with db.atomic():
        db[RESULTS].insert(
            {**row, "run_id": run_id, "checks": json.dumps(row["checks"]), "created_at": utc_now()},
            replace=True,
        )
        db.execute(
            f"update {KIND.table} set done = (select count(*) from {RESULTS} where run_id = ? "
            "and outcome != ?), updated_at = ? where id = ?",
            [run_id, ERROR, utc_now(), run_id],
        )


def pass_rates(db: Database, run_ids: list[int]) -> list[dict[str, Any]]:
    """``{run, variant, pass_rate}`` of each variant of each run, oldest run first, variants in
    the order they were first asked; errors left out (None when a variant only errored)."""
    if not run_ids:
        return []
    rows = db.execute(
        f"select run_id, variant, sum(outcome = ?), sum(outcome != ?) from {RESULTS} "
        f"where run_id in ({','.join('?' * len(run_ids))}) group by run_id, variant "
        "order by run_id, min(id)",
        [PASS, ERROR, *run_ids],
    )
    return [
        {"run": run, "variant": variant, "pass_rate": passed / judged if judged else None}
        for run, variant, passed, judged in rows
    ]


def done_keys(db: Database, run_id: int) -> set[tuple[str, int]]:
    """(cell, repeat) of the replies already checked (errors are asked for again)."""
    return {
        (row["cell"], row["repeat"])
        for row in db[RESULTS].rows_where(
            "run_id = ? and outcome != ?", [run_id, ERROR], select="cell, repeat"
        )
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
