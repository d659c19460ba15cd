"""What a person decides about suspected label errors, kept in SQLite with its history.

    review_dataset(db, "phrasebank")                    # rank suspects, store them as open
    open_suggestions(db, "phrasebank")                  # what to show, most suspect first
    decide(db, "phrasebank", accept=[3, 7], reject=[9]) # change labels, keep the old ones

An accepted suggestion rewrites the row's label in the dataset's own table, adds a line to
``devmode_label_history`` (old label, new label, when, which suggestion) and raises the
dataset's label version by one, all in one transaction; runs record the version they trained
on. The original label is never lost: the history holds every label a row has had. When two
people decide on the same row, the later decision wins and both are in the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import examples, ingest, splits
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.labels import review

SUGGESTIONS = "devmode_label_suggestions"
HISTORY = "devmode_label_history"


@dataclass(frozen=True)
class LabelChange:
    """One row's label changed: from ``old`` to ``new``, by an accepted suggestion or by hand."""

    row_id: int
    old: str | None
    new: str
    suggestion_id: int | None = None  # the accepted suggestion, if any
    split: str | None = None  # put the row in this split too (a row labelled for the first time)


def write_label_changes(
    db: Database, dataset: ingest.Dataset, changes: list[LabelChange], *, source: str
) -> int:
    """The one writer of label changes, inside the caller's transaction: each row's new label,
    a line of history (old, new, where it came from), and the dataset's label version up by
    one. Returns the new version."""
    version, now = dataset.label_version + 1, utc_now()
    table, column = quote_identifier(dataset.name), quote_identifier(dataset.mapping.label)
    split_column = quote_identifier(splits.SPLIT_COLUMN)
    for change in changes:
        if change.split:
            db.execute(
                f"update {table} set {column} = ?, {split_column} = ? where rowid = ?",
                [change.new, change.split, change.row_id],
            )
        else:
            db.execute(
                f"update {table} set {column} = ? where rowid = ?", [change.new, change.row_id]
            )
        db[HISTORY].insert(
            {
                "dataset_id": dataset.id,
                "row_id": change.row_id,
                "old_label": change.old,
                "new_label": change.new,
                "source": source,
                "suggestion_id": change.suggestion_id,
                "label_version": version,
                "changed_at": now,
            }
        )
    db["devmode_datasets"].update(dataset.id, {"label_version": version, "updated_at": now})
    return version


class NoSuchSuggestion(DevmodeError):
    """A suggestion id that is not open for this dataset."""


def review_dataset(
    db: Database,
    name: str,
    base_model: str = "embedded",
    *,
    mode: str = "quick",
    seed: int = 0,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[dict[str, Any]]:
    """Review every labelled row of ``name`` (``quick`` or ``thorough``) and store the suspects as open
    suggestions, replacing the open ones of an earlier review. Returns them, most suspect first."""
    from devmode.models import adapted_bases

    dataset = ingest.get_dataset(db, name)
    rows = examples.labelled_rows(db, dataset.name)
    issues = review.review(
        [text for _, text, _ in rows],
        [label for _, _, label in rows],
        adapted_bases.resolve(db, base_model),
        mode=mode,
        seed=seed,
        on_progress=on_progress,
    )
    now = utc_now()
    with db.atomic():
        db[SUGGESTIONS].delete_where("dataset_id = ? and status = 'open'", [dataset.id])
        db[SUGGESTIONS].insert_all(
            {
                "dataset_id": dataset.id,
                "row_id": rows[issue.index][0],
                "label_column": dataset.mapping.label,
                "given": issue.given,
                "suggested": issue.suggested,
                "confidence": issue.confidence,
                "given_probability": issue.given_probability,
                "rank": rank,
                "mode": mode,
                "reason": issue.reason,
                "duplicate_of": None if issue.duplicate_of is None else rows[issue.duplicate_of][0],
                "status": "open",
                "reviewed_at": now,
            }
            for rank, issue in enumerate(issues, start=1)
        )
    return open_suggestions(db, dataset.name)


def open_suggestions(db: Database, name: str) -> list[dict[str, Any]]:
    """The open suggestions of ``name`` with each row's text and current label, most suspect
    first."""
    dataset = ingest.get_dataset(db, name)
    table = quote_identifier(dataset.name)
    text, label = (quote_identifier(c) for c in (dataset.mapping.text, dataset.mapping.label))
    cursor = db.execute(
        f"""select s.id, s.row_id, r.{text} as text, r.{label} as label, s.given, s.suggested,
                   s.confidence, s.given_probability, s.rank, s.mode, s.reason, s.duplicate_of,
                   s.reviewed_at
            from {SUGGESTIONS} s join {table} r on r.rowid = s.row_id
            where s.dataset_id = ? and s.label_column = ? and s.status = 'open'
            order by s.rank""",
        [dataset.id, dataset.mapping.label],
    )
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _some(ids: list[int], shown: int = 10) -> str:
    """'3, 7, 9' or '1, 2, ... 10 (and 99,990 more)': a message names a few ids, not all."""
    head = ", ".join(map(str, ids[:shown]))
    return head if len(ids) <= shown else f"{head} (and {len(ids) - shown:,} more)"


def decide(
    db: Database, name: str, *, accept: Iterable[int] = (), reject: Iterable[int] = ()
) -> int:
    """Accept (relabel) and reject suggestions of ``name`` by id, all or none. Returns the
    dataset's label version afterwards."""
    accept, reject = sorted(set(accept)), sorted(set(reject))
    both = set(accept) & set(reject)
    if both:
        raise NoSuchSuggestion(
            f"Suggestions {_some(sorted(both))} were both accepted and rejected. Give each id once."
        )
    with db.atomic():
        dataset = ingest.get_dataset(db, name)
        wanted = accept + reject
        found = {
            row["id"]: row
            for row in db[SUGGESTIONS].rows_where(
                "dataset_id = ? and label_column = ? and status = 'open' "
                "and id in (select value from json_each(?))",
                [dataset.id, dataset.mapping.label, json.dumps(wanted)],
            )
        }
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NoSuchSuggestion(
                f"No open suggestion of {dataset.name} has the id{'s' * (len(missing) > 1)} "
                f"{_some(missing)}. Expected ids from python -m devmode review-labels "
                f"{dataset.name} (decided ones are not open any more); nothing was changed."
            )
        version = dataset.label_version
        if accept:
            table, column = quote_identifier(dataset.name), quote_identifier(dataset.mapping.label)
            changes = []
            for suggestion_id in accept:
                suggestion = found[suggestion_id]
                (old,) = db.execute(
                    f"select {column} from {table} where rowid = ?", [suggestion["row_id"]]
                ).fetchone()
                changes.append(
                    LabelChange(suggestion["row_id"], old, suggestion["suggested"], suggestion_id)
                )
            version = write_label_changes(db, dataset, changes, source="review")
        now = utc_now()
        for status, ids in (("accepted", accept), ("rejected", reject)):
            for suggestion_id in ids:
                db[SUGGESTIONS].update(suggestion_id, {"status": status, "decided_at": now})
    return version


def decision_table(suggestions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Suggestions as the rows of a table a person ticks: ``accept`` and ``reject`` unticked."""
    return [{"accept": False, "reject": False, **s} for s in suggestions]


def decisions(rows: Iterable[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """The ids a table of suggestions ticks in its ``accept`` and ``reject`` columns."""
    rows = list(rows)
    return (
        [int(r["id"]) for r in rows if r.get("accept")],
        [int(r["id"]) for r in rows if r.get("reject")],
    )
