"""Sources that feed a dataset by themselves: RSS / Atom feeds and watched folders, polled.

    $ python -m devmode sources add headlines --feed https://example.com/markets.rss --every 300

    source = add_source(db, "headlines", feed="https://example.com/markets.rss")
    result = poll_source(db, source.id)        # one transaction: new items in, health recorded
    due_sources(db)                            # what a watcher polls next

Rows are appended, never inserted twice: an item's key (its guid or link, failing that its
normalised text and date) is stored in ``devmode_source_items`` in the same transaction as its
row, so 100 polls of an unchanged feed add nothing and a poll killed half-way adds nothing.

A feed item becomes a row ``{text: title, date: the raw published string, link, description:
summary, source: the feed's title}``; the date keeps its own zone's calendar date because the
raw string is stored (feedparser's parsed times are in UTC). An item with no date is dated when
first seen. A folder takes CSV / TSV / JSON / JSONL / Parquet files once they stop changing;
a file is read again (adding only new rows) when it changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import feedparser
from sqlite_utils import Database

from devmode import __version__
from devmode.data import ingest, readers
from devmode.data.uploads import UPLOAD_EXTENSIONS
from devmode.db import stamp, utc_now
from devmode.errors import DevmodeError
from devmode.specs import Settings, setting

SOURCE_KINDS = ("feed", "folder")
# A feed larger than this is refused (a runaway or wrong URL), never read into memory whole.
MAX_FEED_BYTES = 20 * 1024 * 1024
# Seconds a feed may take to answer, all of it (a server that trickles bytes is cut off too).
FETCH_TIMEOUT_S = 20.0
# Failed polls back off: every * 2**failures, up to this.
MAX_BACKOFF_S = 3600
# A folder's file is taken once it has not changed for this long (it may be half-written).
SETTLE_S = 2.0
# Files a writer is still busy with, by convention.
_PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")
# Columns of a dataset a feed creates.
FEED_COLUMNS = ["text", "date", "link", "description", "source"]


class InvalidSource(DevmodeError):
    """A feed URL or folder that cannot be watched; the message says what would work."""


class SourceNotFound(DevmodeError):
    """No source has that id."""


class PollFailed(DevmodeError):
    """A poll found nothing it could use (404, timeout, not a feed); recorded, then backed off."""


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
        """What a person calls it: the feed's title, else its address or folder."""
        return self.title or self.location

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
        return {**values, "health": self.health()}


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
                f"Source {clash['id']} already brings {location} into {dataset}. Remove it first "
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


def check_feed_url(url: str) -> str:
    url = (url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidSource(
            f"A feed is an http:// or https:// address; found {url!r}. Copy the RSS or Atom "
            "link from the site (it often ends in .rss, .xml or /feed)."
        )
    return url


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


def poll_source(db: Database, source_id: int, *, timeout: float = FETCH_TIMEOUT_S) -> PollResult:
    """Poll one source: fetch, then store its new items and its health in one transaction.

    A failure (404, timeout, HTML, a malformed feed, a missing folder) stores nothing but the
    health: the error, and a next poll backed off by ``every * 2**failures``.
    """
    source = get_source(db, source_id)
    result = PollResult(source.id)
    try:
        if source.kind == "feed":
            batch = fetch_feed(source, timeout=timeout)
        else:
            batch = scan_folder(source)
    except PollFailed as e:
        result.error = str(e)
        _record_failure(db, source, result.error)
        return result
    try:
        with db.atomic():
            result.added = _store(db, source, batch)
            result.seen, result.notes = len(batch.items), batch.notes
            _record_success(db, source, result, batch)
    except DevmodeError as e:  # the dataset refused the rows (a folder file without its columns)
        result.error = str(e)
        _record_failure(db, source, result.error)
    return result


@dataclass
class _Batch:
    """What one fetch or scan found: rows with their keys, and what to remember."""

    items: list[tuple[str, dict[str, Any]]]  # (key, row)
    columns: list[str]  # of a dataset this source would create
    mapping: ingest.ColumnMapping
    state: dict[str, Any]
    title: str | None = None
    notes: list[str] = field(default_factory=list)


def _store(db: Database, source: Source, batch: _Batch) -> int:
    """Append the batch's unseen rows to the source's dataset (creating it); returns how many."""
    try:
        dataset = ingest.get_dataset(db, source.dataset)
    except ingest.NoSuchDataset:
        if not batch.items:
            return 0
        dataset = ingest.create_empty(
            db,
            source.dataset,
            batch.columns,
            batch.mapping,
            source=source.location,
            format=source.kind,
        )
    seen = {
        key
        for (key,) in db.execute(
            "select key from devmode_source_items where dataset_id = ? and key in "
            "(select value from json_each(?))",
            [dataset.id, json.dumps([key for key, _ in batch.items])],
        )
    }
    new: dict[str, dict[str, Any]] = {}
    for key, row in batch.items:
        if key not in seen and key not in new:
            new[key] = _fit(row, dataset, source)
    if not new:
        return 0
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


def _fit(row: dict[str, Any], dataset: ingest.Dataset, source: Source) -> dict[str, Any]:
    """A feed's row under the dataset's own column names (its text and date columns)."""
    if source.kind != "feed":
        if dataset.mapping.text not in row:
            raise PollFailed(
                f"A file in {source.location} has no {dataset.mapping.text!r} column, which "
                f"{dataset.name} keeps its text in. Expected files with the dataset's columns "
                f"({', '.join(dataset.columns)})."
            )
        return row
    fitted = {dataset.mapping.text: row["text"]}
    if dataset.mapping.date:
        fitted[dataset.mapping.date] = row["date"]
    for column in ("link", "description", "source"):
        fitted.setdefault(column, row[column])
    return fitted


def _record_success(db: Database, source: Source, result: PollResult, batch: _Batch) -> None:
    now = dt.datetime.now(dt.UTC)
    db["devmode_sources"].update(
        source.id,
        {
            "last_poll_at": stamp(now),
            "last_ok_at": stamp(now),
            "last_added": result.added,
            "total_added": source.total_added + result.added,
            "last_error": None,
            "last_note": " ".join(batch.notes) or None,
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


# ----------------------------------------------------------------------------------------------
# Feeds


def fetch_feed(source: Source, *, timeout: float = FETCH_TIMEOUT_S) -> _Batch:
    """Fetch and parse the feed (conditional GET: an unchanged feed answers 304, no body)."""
    state = dict(source.state)
    request = urllib.request.Request(
        source.location,
        headers={
            "User-Agent": f"devmode/{__version__} (+feed watcher)",
            "Accept": "application/rss+xml, application/atom+xml, application/xml, text/xml, */*",
            **({"If-None-Match": state["etag"]} if state.get("etag") else {}),
            **({"If-Modified-Since": state["modified"]} if state.get("modified") else {}),
        },
    )
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = _read_limited(response, source.location, deadline)
            headers = response.headers
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return _Batch([], FEED_COLUMNS, _FEED_MAPPING, state, notes=["Unchanged (HTTP 304)."])
        raise PollFailed(
            f"The feed answered HTTP {e.code} {e.reason} ({source.location})."
        ) from None
    except (TimeoutError, urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
            raise PollFailed(
                f"The feed did not answer within {timeout:g} s ({source.location}); it will be "
                "tried again later."
            ) from None
        raise PollFailed(f"The feed could not be reached ({source.location}): {reason}.") from None
    content_type = headers.get("Content-Type", "")
    parsed = feedparser.parse(
        body, response_headers={"content-type": content_type, "content-location": source.location}
    )
    if not parsed.entries and not parsed.version:
        head = body[:512].lstrip().lower()
        if "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html")):
            raise PollFailed(
                f"{source.location} answered with a web page (HTML), not an RSS or Atom feed. "
                "Expected the feed's own address: look for an RSS link on that page."
            )
        problem = getattr(parsed, "bozo_exception", None) or "no RSS or Atom elements"
        raise PollFailed(
            f"{source.location} is not a readable RSS or Atom feed ({problem}). Expected an XML "
            "document with <rss> or <feed> at its root."
        )
    state = {
        k: v
        for k, v in (("etag", headers.get("ETag")), ("modified", headers.get("Last-Modified")))
        if v
    }
    title = plain_text(parsed.feed.get("title")) or None
    return _feed_batch(parsed.entries, title or source.location, state, title)


_FEED_MAPPING = ingest.ColumnMapping(text="text", date="date")


def _feed_batch(entries, feed_title: str, state: dict[str, Any], title: str | None) -> _Batch:
    first_seen = utc_now()
    items, undated, untitled = [], 0, 0
    for entry in entries:
        text = plain_text(entry.get("title")) or plain_text(entry.get("summary"))[:300]
        if not text:
            untitled += 1
            continue
        published = entry.get("published") or entry.get("updated") or entry.get("created")
        if not published:
            undated += 1
        link = entry.get("link") or None
        row = {
            "text": text,
            "date": published or first_seen,
            "link": link,
            "description": plain_text(entry.get("summary")) or None,
            "source": feed_title,
        }
        items.append((item_key(entry.get("id") or link, text, published), row))
    notes = []
    if undated:
        notes.append(f"{undated} item{'s' * (undated != 1)} had no date: dated when first seen.")
    if untitled:
        notes.append(f"{untitled} item{'s' * (untitled != 1)} had no title or summary: skipped.")
    return _Batch(items, FEED_COLUMNS, _FEED_MAPPING, state, title, notes)


def item_key(guid: str | None, text: str, date: Any) -> str:
    """An item's identity: its guid or link, else its normalised text and date."""
    if guid and str(guid).strip():
        return "id:" + str(guid).strip()
    normalised = " ".join(str(text).lower().split())
    return "text:" + hashlib.sha1(f"{normalised}\x1f{date or ''}".encode()).hexdigest()


def _read_limited(response, url: str, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_FEED_BYTES:
        raise PollFailed(_too_big(url, int(declared)))
    chunks, size = [], 0
    while chunk := response.read(64 * 1024):
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise PollFailed(_too_big(url, size, at_least=True))
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(url: str, size: int, *, at_least: bool = False) -> str:
    mb = MAX_FEED_BYTES // (1024 * 1024)
    return (
        f"{url} is {'over ' if at_least else ''}{size / 1024 / 1024:.0f} MB; a feed may be at most "
        f"{mb} MB. Expected a feed of recent items; check the address."
    )


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(value: Any) -> str:
    """Markup stripped, entities decoded, white space collapsed: '<b>Fed</b> &amp; rates' -> 'Fed & rates'."""
    if not value:
        return ""
    parser = _TextOnly()
    parser.feed(str(value))
    parser.close()
    return " ".join(html.unescape("".join(parser.parts)).split())


# ----------------------------------------------------------------------------------------------
# Folders


def scan_folder(source: Source, *, settle: float = SETTLE_S) -> _Batch:
    """The rows of files that are new or changed since they were taken, once they have stopped
    changing; files still being written wait for the next poll."""
    folder = Path(source.location)
    if not folder.is_dir():
        raise PollFailed(f"The folder {folder} is gone. Create it again, or remove this source.")
    taken: dict[str, list[int]] = dict(source.state.get("files", {}))
    items, notes, columns = [], [], []
    mapping = None
    waiting = 0
    for path in sorted(folder.iterdir()):
        if not _is_data_file(path):
            continue
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime_ns]
        if taken.get(path.name) == signature:
            continue
        if time.time() - stat.st_mtime < settle or stat.st_size == 0:
            waiting += 1
            continue
        try:
            upload = readers.read_upload(path)
            rows = [row for batch, _ in upload.batches() for row in batch]
        except DevmodeError as e:
            notes.append(f"{path.name} could not be read ({e}); it is tried again when it changes.")
            taken[path.name] = signature
            continue
        if mapping is None:
            mapping = ingest.suggest_mapping(upload.columns, rows[:200])
            columns = upload.columns
        for row in rows:
            row.setdefault("source", path.name)
            text = row.get(mapping.text) if mapping.text else None
            date = row.get(mapping.date) if mapping.date else None
            items.append(
                (
                    item_key(
                        None,
                        json.dumps(row, sort_keys=True, default=str) if text is None else text,
                        date,
                    ),
                    row,
                )
            )
        taken[path.name] = signature
    if waiting:
        notes.append(f"{waiting} file{'s' * (waiting != 1)} still being written: taken next poll.")
    if "source" not in columns and columns:
        columns = [*columns, "source"]
    return _Batch(items, columns, mapping or ingest.ColumnMapping(), {"files": taken}, None, notes)


def _is_data_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith((".", "~"))
        and not path.name.endswith(_PARTIAL_SUFFIXES)
        and path.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS
    )


def _short(stamp: str | None) -> str:
    return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else "-"
