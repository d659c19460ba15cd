"""Who a text is about when the data has no ticker column: a watchlist of tickers with their
company names and aliases, matched by cashtag (``$AAPL``) and by name.

    $ python -m devmode watchlist add AAPL --name "Apple" --alias "iPhone maker"

    add_entry(db, "AAPL", name="Apple", aliases=["iPhone maker"])   # every dataset re-tagged
    tag_rows(db, dataset, rows)      # scoring tags each chunk: devmode_mentions

A text can be about several entries. For a dataset without a ticker column, the ticker filter
of trends, alerts and the Monitor page reads these mentions, so each watchlist entry gets its
trend, its alerts and its tile on the wall display.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import ingest
from devmode.db import utc_now
from devmode.errors import DevmodeError

TICKER = re.compile(r"^[A-Za-z][A-Za-z0-9.\-]{0,11}$")
# Rows re-tagged per statement when the watchlist changes.
RETAG_CHUNK = 5000


class InvalidEntry(DevmodeError):
    """A ticker, name or alias that cannot be matched."""


@dataclass(frozen=True)
class Entry:
    ticker: str
    name: str | None
    aliases: list[str]

    def describe(self) -> str:
        names = [n for n in (self.name, *self.aliases) if n]
        return f"${self.ticker}" + (f" ({', '.join(names)})" if names else "")


def add_entry(
    db: Database, ticker: str, *, name: str | None = None, aliases: Iterable[str] = ()
) -> Entry:
    """Add (or replace) an entry and tag every scored dataset without a ticker column again."""
    ticker = (ticker or "").strip().lstrip("$").upper()
    if not TICKER.match(ticker):
        raise InvalidEntry(
            f"{ticker!r} is not a ticker. Expected a letter then up to 11 letters, digits, dots "
            "or dashes, e.g. AAPL or BRK.B."
        )
    names = [n.strip() for n in (name or "", *aliases) if n and n.strip()]
    short = [n for n in names if len(n) < 3]
    if short:
        raise InvalidEntry(
            f"Names and aliases need at least 3 characters to be matched safely; found {short}."
        )
    with db.atomic():
        db["devmode_watchlist"].upsert(
            {
                "ticker": ticker,
                "name": (name or "").strip() or None,
                "aliases": json.dumps([a.strip() for a in aliases if a and a.strip()]),
                "created_at": utc_now(),
            },
            pk="ticker",
        )
        retag_all(db)
    return get_entry(db, ticker)


def get_entry(db: Database, ticker: str) -> Entry:
    row = next(db["devmode_watchlist"].rows_where("ticker = ?", [ticker.lstrip("$").upper()]), None)
    if row is None:
        raise InvalidEntry(
            f"{ticker!r} is not on the watchlist. See it with python -m devmode watchlist list."
        )
    return Entry(row["ticker"], row["name"], json.loads(row["aliases"] or "[]"))


def list_entries(db: Database) -> list[Entry]:
    return [
        Entry(r["ticker"], r["name"], json.loads(r["aliases"] or "[]"))
        for r in db["devmode_watchlist"].rows_where(order_by="ticker")
    ]


def remove_entry(db: Database, ticker: str) -> Entry:
    entry = get_entry(db, ticker)
    with db.atomic():
        db["devmode_watchlist"].delete(entry.ticker)
        db["devmode_mentions"].delete_where("ticker = ?", [entry.ticker])
    return entry


class Matcher:
    """One regular expression for the whole watchlist: ``matcher.tickers(text)``."""

    def __init__(self, entries: list[Entry]):
        self._groups: dict[str, str] = {}
        parts = []
        for i, entry in enumerate(entries):
            words = [re.escape(n) for n in (entry.name, *entry.aliases) if n]
            pattern = rf"(?<![\w$])\${re.escape(entry.ticker)}(?![\w])"
            if words:
                pattern += rf"|(?<!\w)(?:{'|'.join(words)})(?!\w)"
            parts.append(f"(?P<e{i}>{pattern})")
            self._groups[f"e{i}"] = entry.ticker
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def tickers(self, text: str | None) -> set[str]:
        if self._pattern is None or not text:
            return set()
        return {self._groups[m.lastgroup] for m in self._pattern.finditer(str(text)) if m.lastgroup}


def tag_rows(
    db: Database, dataset_id: int, rows: list[tuple[int, str | None]], matcher: Matcher
) -> int:
    """Store the mentions of ``(row_id, text)`` rows; returns how many were stored."""
    found = [
        (dataset_id, ticker, row_id) for row_id, text in rows for ticker in matcher.tickers(text)
    ]
    db.conn.executemany(
        "insert or ignore into devmode_mentions (dataset_id, ticker, row_id) values (?, ?, ?)",
        found,
    )
    return len(found)


def retag_all(db: Database) -> None:
    """Tag again every dataset without a ticker column (the watchlist changed)."""
    matcher = Matcher(list_entries(db))
    for dataset in ingest.list_datasets(db):
        if dataset.mapping.ticker or not dataset.mapping.text:
            continue
        db["devmode_mentions"].delete_where("dataset_id = ?", [dataset.id])
        cursor = db.execute(
            f"select rowid, {quote_identifier(dataset.mapping.text)} from "
            f"{quote_identifier(dataset.name)} order by rowid"
        )
        while rows := cursor.fetchmany(RETAG_CHUNK):
            tag_rows(db, dataset.id, rows, matcher)


def split_aliases(text: str | None) -> list[str]:
    """'iPhone maker; Apple Inc' -> ['iPhone maker', 'Apple Inc'] (a page's one box)."""
    return [part.strip() for part in re.split(r"[;\n]", text or "") if part.strip()]


def uses_watchlist(dataset: ingest.Dataset) -> bool:
    """Whether the dataset's tickers come from the watchlist (it has no ticker column)."""
    return not dataset.mapping.ticker
