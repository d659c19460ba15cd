"""Sources that feed a dataset by themselves: RSS / Atom feeds and watched folders, polled.

    $ python -m devmode sources add headlines --feed https://example.com/markets.rss --every 300

    source = add_source(db, "headlines", feed="https://example.com/markets.rss")
    result = poll_source(db, source.id)        # one transaction: new items in, health recorded
    due_sources(db)                            # what a watcher polls next

Rows are appended, never inserted twice: an item's key (its guid or link, failing that its
normalised text and date) is stored in ``devmode_source_items`` in the same transaction as its
row, so 100 polls of an unchanged feed add nothing and a poll killed half-way adds nothing.

What a poll reads comes from ``feeds.py`` (RSS and Atom, fetched within bounds) and
``folders.py`` (files dropped into a folder); this module keeps the sources, stores what a poll
found in one transaction, and records each source's health. Any failure while polling one
source, expected or not, is recorded in that source's health and backed off; it never reaches
the caller, so a watcher polling ten sources goes on with the other nine. Feed addresses are
shown masked (``addresses.mask``): an address may carry a token.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode import addresses
from devmode.data import dates, feeds, folders, ingest
from devmode.data.polling import Batch, Group, plural
from devmode.db import stamp, utc_now
from devmode.errors import DevmodeError, in_words
from devmode.specs import Settings, setting

# Failed polls back off: every * 2**failures, up to this.
MAX_BACKOFF_S = 3600
# A note or error stored in a source's health is cut to this many characters.
MAX_HEALTH_CHARS = 2000


class InvalidSource(DevmodeError):
    """A feed URL or folder that cannot be watched; the message says what would work."""


class SourceNotFound(DevmodeError):
    """No source has that id."""


@dataclass(frozen=True)
class SourceSettings(Settings):
    """How often a source is polled."""

    error = InvalidSource

    every: int = setting(
        300,
        "Seconds between polls of this source (failed polls back off, up to an hour).",
        minimum=5,
        maximum=86400,
        unit="seconds",
        label="Poll every (seconds)",
    )


@dataclass(frozen=True)
class Source:
    id: int
    kind: str
    location: str
    dataset: str
    every_seconds: int
    title: str | None
    state: dict[str, Any]
    created_at: str
    last_poll_at: str | None
    last_ok_at: str | None
    last_added: int | None
    total_added: int
    last_error: str | None
    last_note: str | None
    failures: int
    next_poll_at: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Source:
        return cls(**{**row, "state": json.loads(row["state"] or "{}")})

    @property
    def name(self) -> str:
        """What a person calls it: the feed's title, else its address (masked) or folder."""
        return self.title or self.shown_location

    @property
    def shown_location(self) -> str:
        return shown_location(self.kind, self.location)

    def health(self) -> str:
        """'OK: 12 added at 2026-11-30 12:00 UTC' or 'Failing (3 in a row): HTTP 404 ...'."""
        if self.last_poll_at is None:
            return "Not polled yet: due now."
        when = _short(self.last_poll_at)
        if self.last_error:
            again = f"; next try {_short(self.next_poll_at)}" if self.next_poll_at else ""
            times = "poll" if self.failures == 1 else f"{self.failures} polls in a row"
            return f"Failing ({times}, last {when}): {self.last_error}{again}"
        note = f" {self.last_note}" if self.last_note else ""
        return f"OK: {self.last_added or 0:,} new at {when} ({self.total_added:,} in all).{note}"

    def to_dict(self) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if k != "state"}
        return {**values, "location": self.shown_location, "health": self.health()}


@dataclass
class PollResult:
    source_id: int
    added: int = 0
    seen: int = 0  # items or rows read this poll, new or not
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.error:
            return f"Source {self.source_id}: {self.error}"
        notes = f" {' '.join(self.notes)}" if self.notes else ""
        return f"Source {self.source_id}: {self.added:,} new of {self.seen:,} read.{notes}"


# ----------------------------------------------------------------------------------------------
# Keeping sources


def add_source(
    db: Database,
    dataset: str,
    *,
    feed: str | None = None,
    folder: str | Path | None = None,
    settings: SourceSettings | None = None,
) -> Source:
    """Attach a feed URL or a folder to ``dataset`` (created on the first poll when it does not
    exist); it is due at once."""
    settings = settings or SourceSettings()
    if (feed is None) == (folder is None):
        raise InvalidSource("Give one of a feed URL (--feed URL) or a folder (--folder PATH).")
    if feed is not None:
        kind, location = "feed", check_feed_url(feed)
    else:
        kind, location = "folder", str(check_folder(folder))
    try:
        existing = ingest.get_dataset(db, dataset)
    except ingest.NoSuchDataset:
        ingest.validate_name(db, dataset)
    else:
        dataset = existing.name
    with db.atomic():
        clash = next(
            db["devmode_sources"].rows_where(
                "kind = ? and location = ? and lower(dataset) = lower(?)", [kind, location, dataset]
            ),
            None,
        )
        if clash:
            raise InvalidSource(
                f"Source {clash['id']} already brings {shown_location(kind, location)} into "
                f"{dataset}. Remove it first "
                f"(python -m devmode sources remove {clash['id']}) to add it again."
            )
        source_id = (
            db["devmode_sources"]
            .insert(
                {
                    "kind": kind,
                    "location": location,
                    "dataset": dataset,
                    "every_seconds": settings.every,
                    "state": "{}",
                    "created_at": utc_now(),
                }
            )
            .last_pk
        )
    return get_source(db, source_id)


def add_location(
    db: Database, dataset: str, location: str, settings: SourceSettings | None = None
) -> Source:
    """A feed when ``location`` is an http(s) address, else a folder: one box on the page."""
    location = (location or "").strip()
    if not location:
        raise InvalidSource(
            "Give a feed's address (https://...) or a folder's path to watch; found nothing."
        )
    if re.match(r"^[a-z][a-z0-9+.-]*://", location, re.IGNORECASE):
        return add_source(db, dataset, feed=location, settings=settings)
    if not Path(location).expanduser().is_dir():
        raise InvalidSource(
            f"{location!r} is neither a feed address nor a folder on this machine. Expected an "
            "http:// or https:// RSS or Atom address, or the path of an existing folder."
        )
    return add_source(db, dataset, folder=location, settings=settings)


def health_rows(db: Database) -> list[dict[str, Any]]:
    """A row per source for a table: id, what, into which dataset, every, health."""
    return [
        {
            "id": s.id,
            "source": s.name,
            "kind": s.kind,
            "dataset": s.dataset,
            "every (s)": s.every_seconds,
            "added": s.total_added,
            "health": s.health(),
        }
        for s in list_sources(db)
    ]


def describe_row(row: dict[str, Any]) -> str:
    """'3 · Local Markets -> wire': a ``health_rows`` row in a select."""
    return f"{row['id']} · {row['source']} -> {row['dataset']}"


def shown_location(kind: str, location: str) -> str:
    """The folder, or the feed's address with all but its host and first path segment masked
    (it may carry a token)."""
    return addresses.mask(location) if kind == "feed" else location


def check_feed_url(url: str) -> str:
    try:
        return addresses.check_address(
            url,
            what="feed",
            example="Copy the RSS or Atom link from the site (it often ends in .rss, .xml or /feed).",
        )
    except addresses.InvalidAddress as e:
        raise InvalidSource(str(e)) from None


def check_folder(folder: str | Path | None) -> Path:
    path = Path(str(folder or "")).expanduser()
    if not str(folder or "").strip() or not path.is_dir():
        raise InvalidSource(
            f"{str(folder)!r} is not a folder on this machine. Give the path of an existing "
            "folder that files will be dropped into."
        )
    return path.resolve()


def get_source(db: Database, source_id: int) -> Source:
    row = next(db["devmode_sources"].rows_where("id = ?", [source_id]), None)
    if row is None:
        raise SourceNotFound(
            f"No source with id {source_id}. See them with python -m devmode sources list."
        )
    return Source.from_row(row)


def list_sources(db: Database, dataset: str | None = None) -> list[Source]:
    where, args = ("lower(dataset) = lower(?)", [dataset]) if dataset else (None, [])
    return [
        Source.from_row(r) for r in db["devmode_sources"].rows_where(where, args, order_by="id")
    ]


def remove_source(db: Database, source_id: int) -> Source:
    """Stop polling a source; the rows it brought stay in the dataset."""
    source = get_source(db, source_id)
    db["devmode_sources"].delete(source_id)
    return source


def due_sources(db: Database, now: str | None = None) -> list[Source]:
    """Sources whose next poll is due (a new source is due at once), oldest poll first."""
    now = now or utc_now()
    return [
        Source.from_row(r)
        for r in db["devmode_sources"].rows_where(
            "next_poll_at is null or next_poll_at <= ?", [now], order_by="next_poll_at, id"
        )
    ]


def next_due_at(db: Database) -> str | None:
    """When the next source is due (None: no sources)."""
    return db.execute("select min(coalesce(next_poll_at, '')) from devmode_sources").fetchone()[0]


# ----------------------------------------------------------------------------------------------
# Polling


def poll_source(
    db: Database, source_id: int, *, timeout: float = feeds.FETCH_TIMEOUT_S
) -> PollResult:
    """Poll one source: fetch, then store its new items and its health in one transaction.

    A failure of any kind (404, timeout, HTML, a malformed feed, a missing folder, a bug) stores
    nothing but the health: the error, and a next poll backed off by ``every * 2**failures``.
    """
    source = get_source(db, source_id)
    result = PollResult(source.id)
    try:
        if source.kind == "feed":
            batch = feeds.fetch_feed(source.location, source.state, timeout=timeout)
        else:
            batch = folders.scan_folder(source.location, source.state)
        with db.atomic():
            result.added, notes = _store(db, source, batch)
            result.seen, result.notes = batch.seen, [*notes, *batch.notes]
            _record_success(db, source, result, batch)
    except Exception as e:  # noqa: BLE001 - recorded and backed off, never the watcher's end
        result.error = _describe_failure(e)
        _record_failure(db, source, result.error)
    return result


def _describe_failure(e: Exception) -> str:
    if isinstance(e, DevmodeError):
        return str(e)[:MAX_HEALTH_CHARS]
    return f"The poll failed unexpectedly ({in_words(e)}); it is tried again later."


def _store(db: Database, source: Source, batch: Batch) -> tuple[int, list[str]]:
    """Append the batch's unseen rows to the source's dataset (creating it from the first group
    that has a text column); a group the dataset cannot take is refused on its own. Returns
    the rows added and notes on what was refused or flagged."""
    notes: list[str] = []
    try:
        dataset = ingest.get_dataset(db, source.dataset)
    except ingest.NoSuchDataset:
        dataset = None
    added = 0
    for group in batch.groups:
        if dataset is None:
            if not group.items:
                continue
            if group.mapping.text is None:
                notes.append(_refused(group, "it has no column of text to take"))
                continue
            dataset = ingest.create_empty(
                db,
                source.dataset,
                group.columns,
                group.mapping,
                source=source.shown_location,
                format=source.kind,
            )
        if dataset.mapping.text not in group.columns and source.kind == "folder":
            notes.append(
                _refused(
                    group,
                    f"it has no {dataset.mapping.text!r} column, which {dataset.name} keeps its "
                    f"text in (expected the dataset's columns: {', '.join(dataset.columns)})",
                )
            )
            continue
        try:
            with db.atomic():  # a savepoint: a file the dataset refuses leaves the others whole
                added += _append_group(db, source, dataset, group, notes)
        except (DevmodeError, sqlite3.Error) as e:
            if source.kind == "feed":
                raise
            notes.append(_refused(group, str(e)[: MAX_HEALTH_CHARS // 4]))
    return added, notes


def _refused(group: Group, why: str) -> str:
    return f"{group.name} was refused: {why}; it is tried again when it changes."


def _append_group(
    db: Database, source: Source, dataset: ingest.Dataset, group: Group, notes: list[str]
) -> int:
    seen = {
        key
        for (key,) in db.execute(
            "select key from devmode_source_items where dataset_id = ? and key in "
            "(select value from json_each(?))",
            [dataset.id, json.dumps([key for key, _ in group.items])],
        )
    }
    new: dict[str, dict[str, Any]] = {}
    for key, row in group.items:
        if key not in seen and key not in new:
            new[key] = _fit(row, dataset, source)
    if not new:
        return 0
    ahead = _dated_ahead(new.values(), dataset.mapping.date)
    if ahead:
        notes.append(
            f"{plural(len(ahead), 'item')} of {group.name} dated more than a day ahead (the "
            f"latest {max(ahead)}): kept, but left out of the latest day and period."
        )
    row_ids = ingest.append_rows(db, dataset.name, list(new.values()))
    seen_at = utc_now()
    db["devmode_source_items"].insert_all(
        {
            "dataset_id": dataset.id,
            "key": key,
            "row_id": row_id,
            "source_id": source.id,
            "seen_at": seen_at,
        }
        for key, row_id in zip(new, row_ids, strict=True)
    )
    return len(new)


def _dated_ahead(rows, date_column: str | None) -> list[str]:
    """The dates of rows dated after tomorrow (a typo, or a feed's clock), as 'YYYY-MM-DD'."""
    if not date_column:
        return []
    horizon = dates.horizon()
    found = (dates.parse_date(row.get(date_column)) for row in rows)
    return [day for day in found if day and day > horizon]


def _fit(row: dict[str, Any], dataset: ingest.Dataset, source: Source) -> dict[str, Any]:
    """A feed's row under the dataset's own column names (its text and date columns)."""
    if source.kind != "feed":
        return row
    fitted = {dataset.mapping.text: row["text"]}
    if dataset.mapping.date:
        fitted[dataset.mapping.date] = row["date"]
    for column in ("link", "description", "source"):
        fitted.setdefault(column, row[column])
    return fitted


def _record_success(db: Database, source: Source, result: PollResult, batch: Batch) -> None:
    now = dt.datetime.now(dt.UTC)
    db["devmode_sources"].update(
        source.id,
        {
            "last_poll_at": stamp(now),
            "last_ok_at": stamp(now),
            "last_added": result.added,
            "total_added": source.total_added + result.added,
            "last_error": None,
            "last_note": " ".join(result.notes)[:MAX_HEALTH_CHARS] or None,
            "failures": 0,
            "next_poll_at": stamp(now + dt.timedelta(seconds=source.every_seconds)),
            "state": json.dumps(batch.state),
            "title": batch.title or source.title,
        },
    )


def _record_failure(db: Database, source: Source, error: str) -> None:
    now = dt.datetime.now(dt.UTC)
    failures = source.failures + 1
    wait = min(source.every_seconds * 2 ** (failures - 1), max(MAX_BACKOFF_S, source.every_seconds))
    with db.atomic():
        db["devmode_sources"].update(
            source.id,
            {
                "last_poll_at": stamp(now),
                "last_added": 0,
                "last_error": error,
                "failures": failures,
                "next_poll_at": stamp(now + dt.timedelta(seconds=wait)),
            },
        )


def _short(stamp: str | None) -> str:
    return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else "-"
