"""Running a suite: every cell, each ``repeat`` times, its reply checked by its assertions and
stored as it comes, so a cancelled, killed or failed run resumes where it stopped.

    run = store.create_run(db, suite)
    execute_run(db_path, run.id)                # in this process (the CLI)
    start_run(db_path, suite)                   # in a worker process (the page)

A reply that never came (an endpoint down or failing half-way) is stored as an ``error`` with
the endpoint's message and the cell's name; the other cells go on, and resuming the run asks
for the errors again. Backends are loaded once per run (the embedded model once).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devmode import jobs
from devmode.chat.context import ChatInputError, ContextOverflow
from devmode.chat.limits import BackendSpec
from devmode.chat.replies import Backend, BannedPrompt, Reply, respond
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.suites import store
from devmode.suites.assertions import evaluate
from devmode.suites.suite import Cell, Grader, InvalidSuite, Suite

GRADER_PROMPT = (
    "You grade a reply against a rubric. Answer PASS or FAIL on the first line, then one short "
    "sentence saying why.\n\nRubric: {rubric}\n\nReply:\n{reply}"
)


def check_classifiers(db, suite: Suite) -> None:
    """Refuse, before any reply is asked for, a classifier assertion whose model cannot be used
    (a deleted run, no active model) or does not have the class it names."""
    from devmode.models import references

    asked = {
        (a.model, a.value): a
        for cell in suite.cells()
        for a in suite.assertions_for(cell)
        if a.type == "classifier"
    }
    for assertion in asked.values():
        try:
            chosen = references.resolve(db, assertion.model)
        except DevmodeError as e:
            raise InvalidSuite(f"The classifier assertion on {assertion.model}: {e}") from None
        if assertion.value not in chosen.labels:
            raise InvalidSuite(
                f"The classifier assertion asks {chosen.title} for {assertion.value!r}, a class "
                f"it does not have; its classes are {', '.join(chosen.labels)}. Name one of "
                "those, or another model."
            )


def start_run(db_path: str | Path, suite: Suite) -> store.SuiteRun:
    """Store ``suite`` and a run of it, and start the run in a worker process."""
    with open_db(db_path) as db:
        check_classifiers(db, suite)
        run = store.create_run(db, suite)
    jobs.start(db_path, store.KIND, run.id)
    with open_db(db_path) as db:
        return store.get_run(db, run.id)


def resume_run(db_path: str | Path, run_id: int) -> store.SuiteRun:
    """Start a cancelled, interrupted or failed run again in a worker: it asks only for the
    replies not yet checked (and those that errored)."""
    with open_db(db_path) as db:
        jobs.check_resumable(store.KIND, store.get_run(db, run_id))
    jobs.start(db_path, store.KIND, run_id)
    with open_db(db_path) as db:
        return store.get_run(db, run_id)


def request_cancel(db, run_id: int) -> None:
    """Ask the run's worker to stop after its current reply (the replies so far are kept)."""
    jobs.request_cancel(db, store.KIND, run_id)


def execute_run(
    db_path: str | Path,
    run_id: int,
    *,
    backends: Callable[[BackendSpec], Backend] | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] = lambda row, done, total: None,
    echo: Callable[[str], None] | None = None,
) -> store.SuiteRun:
    """Run suite run ``run_id`` in this process (what its worker does) and return it finished.

    :param backends: a backend for a spec (default: ``chat.backends.make_backend``, the
        embedded model loaded once)
    :param on_result: called with each stored reply, the replies done and the total
    :param echo: told a line per stored reply (a worker's log)
    """
    with jobs.claimed(db_path, store.KIND, run_id) as db:
        run = store.get_run(db, run_id)
        suite = run.as_suite()
        should_stop = jobs.CancelPoll(db, store.KIND, run_id)
        backend_for = _cached(backends or _default_backends(db_path))
        checks = _Checks(suite, db_path)
        done = store.done_keys(db, run_id)
        count = len(done)
        for cell in suite.cells():
            for repeat in range(suite.repeat):
                if (cell.key, repeat) in done:
                    continue
                if should_stop():
                    jobs.set_status(db, store.KIND, run_id, jobs.CANCELLED, pid=None)
                    return store.get_run(db, run_id)
                row = ask(suite, cell, repeat, backend_for, checks)
                store.add_result(db, run_id, row)
                count += row["outcome"] != store.ERROR
                on_result(row, count, suite.size)
                if echo:
                    echo(f"[{count}/{suite.size}] {row['outcome']} {row['cell']} #{repeat + 1}")
        summary = summarise(suite, store.results(db, run_id))
        status = jobs.COMPLETED if not summary["errors"] else jobs.FAILED
        error = None
        if summary["errors"]:
            first = summary["error_cells"][0]
            error = (
                f"{summary['errors']} of {suite.size} replies never came (the first: cell "
                f"{first['cell']}, {first['detail']}). The other cells are kept; resume the "
                "run to ask for those again."
            )
        jobs.set_status(
            db, store.KIND, run_id, status, pid=None, summary=json.dumps(summary), error=error
        )
        return store.get_run(db, run_id)


def ask(
    suite: Suite,
    cell: Cell,
    repeat: int,
    backend_for: Callable[[BackendSpec], Backend],
    checks: _Checks,
) -> dict[str, Any]:
    """One reply for ``cell`` and its checks, as a result row."""
    base = {
        "cell": cell.key,
        "repeat": repeat,
        "prompt_id": cell.prompt.id,
        "case_id": cell.case.id,
        "variant": cell.variant.name,
        "prompt": cell.text,
    }
    try:
        backend = backend_for(cell.variant.backend)
        plan = suite.settings.plan(
            backend, cell.case.turns, cell.text, cell.variant.budget_tokens
        )  # a multi-turn case's earlier turns are history, fitted under the budget
        reply = respond(backend, plan, cell.variant.limits).to_dict()
    except ContextOverflow as e:
        reply = _no_reply("context_overflow", str(e))
    except BannedPrompt as e:  # the prompt holds a banned word: the variant refuses it
        reply = _no_reply("banned_word", str(e))
    except ChatInputError as e:  # it cannot be sent at all (an empty message), as the bench says
        reply = _no_reply("refused", str(e))
    except DevmodeError as e:  # the backend could not be loaded or reached
        reply = _no_reply("api_error", f"stopped: {e}")
    row = {
        **base,
        **{k: reply.get(k) for k in ("text", "stopped_by", "which", "detail")},
        **{k: reply.get(k) for k in ("prompt_tokens", "completion_tokens")},
        **{k: reply.get(k) for k in ("first_token_s", "total_s")},
    }
    if reply["stopped_by"] == "api_error" and not reply.get("text"):
        return {**row, "outcome": store.ERROR, "checks": []}
    return {**row, **judged(suite, cell, {**reply, "prompt": cell.text}, checks)}


def judged(suite: Suite, cell: Cell, reply: dict[str, Any], checks: _Checks) -> dict[str, Any]:
    """``outcome`` and ``checks`` of a reply by the cell's assertions; an error when a grader
    could not judge it (a run asks again on resume; a rescore checks it again)."""
    try:
        results = [
            {"assertion": a.to_dict(), **vars(checks.evaluate(a, reply))}
            for a in suite.assertions_for(cell)
        ]
    except GraderFailed as e:  # the reply came, but could not be judged
        return {"outcome": store.ERROR, "detail": str(e), "checks": []}
    return {
        "outcome": store.PASS if all(r["passed"] for r in results) else store.FAIL,
        "checks": results,
    }


def rescore(db_path: str | Path, run_id: int, suite: Suite | None = None) -> store.SuiteRun:
    """A new run, marked rescored (``summary["rescored_from"]``), of the replies run
    ``run_id`` stored, checked by ``suite``'s assertions: by default the run's suite as it is
    saved now. No chat model is asked; a classifier assertion still runs its classifier.
    Replies that errored stay errors; cells the suite no longer has are left out. The new run
    is stored whole, or not at all."""
    with open_db(db_path) as db:
        jobs.reconcile(db, store.KIND)  # a run whose worker is gone is not running any more
        source = store.get_run(db, run_id)
        if source.is_active:
            raise InvalidSuite(
                f"Run {run_id} is still {source.status} ({source.progress_text()}); rescore it "
                "once it has finished, or cancel it first."
            )
        # the run's own prompts, cases, variants and limits; the checks of the suite given
        suite = source.as_suite().checked_by(
            suite or store.find_suite(db, source.suite) or source.as_suite()
        )
        check_classifiers(db, suite)
        stored = store.results(db, run_id)
    cells = {cell.key: cell for cell in suite.cells()}
    checks = _Checks(suite, db_path)
    rows = []
    for row in stored:
        cell = cells.get(row["cell"])
        if cell is None or row["repeat"] >= suite.repeat:
            continue
        kept = {k: v for k, v in row.items() if k not in ("id", "run_id", "created_at")}
        if row["outcome"] == store.ERROR and not row.get("text"):
            rows.append(kept)  # no reply came: nothing to check
            continue
        if row["outcome"] == store.ERROR:  # a grader could not judge it: it may now
            kept["detail"] = None
        rows.append({**kept, **judged(suite, cell, row, checks)})
    with open_db(db_path) as db, db.atomic():
        run = store.create_run(db, suite, suite_id=source.suite_id)
        for row in rows:
            store.add_result(db, run.id, row)
        summary = {**summarise(suite, rows), "rescored_from": run_id}
        unjudged = sum(1 for r in rows if r["outcome"] == store.ERROR and r.get("text"))
        error = (
            f"{unjudged} replies could not be judged (a grader did not answer); rescore run "
            f"{run_id} again to check them."
            if unjudged
            else None
        )
        jobs.set_status(
            db, store.KIND, run.id, jobs.COMPLETED, summary=json.dumps(summary), error=error
        )
        return store.get_run(db, run.id)


def summarise(suite: Suite, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Cells (each passes when ``min_pass_rate`` of its repeats pass), replies and errors."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault(row["cell"], []).append(row)
    cells = [cell.key for cell in suite.cells()]
    passed = sum(
        1
        for key in cells
        if by_cell.get(key)
        and pass_rate(by_cell[key]) is not None
        and pass_rate(by_cell[key]) >= suite.min_pass_rate
    )
    errors = [r for r in rows if r["outcome"] == store.ERROR]
    return {
        "cells": len(cells),
        "passed": passed,
        "failed": len(cells) - passed,
        "replies": len(rows),
        "errors": len(errors),
        "error_cells": [{"cell": r["cell"], "detail": r["detail"]} for r in errors[:5]],
    }


def pass_counts(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(replies that passed, replies judged): errors are neither."""
    judged = [r for r in rows if r["outcome"] != store.ERROR]
    return sum(r["outcome"] == store.PASS for r in judged), len(judged)


def pass_rate(rows: list[dict[str, Any]]) -> float | None:
    """The share of a cell's replies that passed (errors left out; None when all errored)."""
    passes, judged = pass_counts(rows)
    return passes / judged if judged else None


class GraderFailed(DevmodeError):
    """The grading endpoint of an ``llm-rubric`` check did not answer: the cell is an error
    (asked again when the run resumes), not a failure of the reply."""


class _Checks:
    """Evaluates assertions, with the sentence encoder and grader loaded once, when needed."""

    def __init__(self, suite: Suite, db_path: str | Path | None = None):
        self.suite, self.db_path = suite, db_path
        self._vectors = None
        self._models = None
        self._chosen: dict[str, Any] = {}  # each classifier reference, resolved once a run

    def evaluate(self, assertion, reply: dict[str, Any]):
        return evaluate(
            assertion, reply, similarity=self.similarity, grader=self.grade, classify=self.classify
        )

    def classify(self, reference: str, text: str) -> dict[str, float]:
        """P(class) for each of the model's classes, the model loaded once per run."""
        from devmode.models import references

        if self._models is None:
            self._models = references.ModelCache()
        if reference not in self._chosen:
            with open_db(self.db_path) as db:
                self._chosen[reference] = references.resolve(db, reference)
        chosen = self._chosen[reference]
        scores = self._models.scorer(chosen).score([text or " "])
        return dict(zip(scores.label_names, map(float, scores.probabilities[0]), strict=True))

    def similarity(self, text: str, expected: list[str]) -> list[float]:
        if self._vectors is None:
            from devmode.models.classifier import base_vectors
            from devmode.models.config import TrainConfig

            self._vectors = base_vectors(TrainConfig().base_model)
        vectors = self._vectors([text, *expected])
        return [float(vectors[0] @ v) for v in vectors[1:]]

    def grade(self, text: str, rubric: str) -> tuple[bool, str]:
        grader: Grader | None = self.suite.grader
        if grader is None:
            return False, "no grader in the suite (grader: {base_url, model})"
        from devmode.chat.backends import OpenAIBackend
        from devmode.chat.context import ContextPlan
        from devmode.chat.limits import ChatLimits

        backend = OpenAIBackend(grader.base_url, grader.model, api_key_env=grader.api_key_name)
        plan = ContextPlan.from_messages(
            [{"role": "user", "content": GRADER_PROMPT.format(rubric=rubric, reply=text)}]
        )
        reply = respond(backend, plan, ChatLimits(max_tokens=64, temperature=0.0))
        if reply.failed:
            raise GraderFailed(f"the grader did not answer: {reply.detail}")
        verdict = reply.text.strip()
        return verdict.upper().startswith("PASS"), f"grader: {' '.join(verdict.split())[:120]}"


def _no_reply(stopped_by: str, detail: str) -> dict[str, Any]:
    return {**vars(Reply("", stopped_by, detail, None, None, None, 0.0)), "masked": []}


def _cached(make: Callable[[BackendSpec], Backend]) -> Callable[[BackendSpec], Backend]:
    made: dict[BackendSpec, Backend] = {}

    def backend_for(spec: BackendSpec) -> Backend:
        if spec not in made:
            made[spec] = make(spec)
        return made[spec]

    return backend_for


def _default_backends(db_path: str | Path) -> Callable[[BackendSpec], Backend]:
    from devmode import environment
    from devmode.chat.backends import make_backend

    return lambda spec: make_backend(spec, cache_dir=environment.chat_model_dir(db_path))
