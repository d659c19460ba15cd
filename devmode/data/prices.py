"""Prices datasets: closing prices per ticker and day, or one index series, read from a long or
a wide file, checked, and stored beside the text datasets (one name space for both).

    $ python -m devmode ingest stocks.csv --name stocks --prices

    prices = store_prices(db, readers.read_upload("stocks.csv"), "stocks")
    closes(db, "stocks", "AAPL")          # [("2018-01-01", 1.0), ...], oldest first

A long file has a date, a ticker and a closing price per row. A wide file has a date and one
column of closes per ticker, the shape of ``plotly.data.stocks()``. A series with no ticker
(a long file's rows without a ticker, or a file whose one price column is called close, price,
...) is the index, stored under the ticker ``INDEX``. A prices dataset needs no text column.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from devmode.data import dates, ingest
from devmode.data.price_tables import PRICES_TABLE, SETS_TABLE
from devmode.data.suggestions import column_named
from devmode.data.uploads import Upload
from devmode.db import utc_now
from devmode.errors import DevmodeError

# The ticker an index series (a series with no ticker) is stored under.
INDEX = ""
# Column names that hold a closing price, in order of preference (compared case-insensitively).
PRICE_NAMES = (
    "close",
    "adj close",
    "adj_close",
    "adjclose",
    "close_price",
    "closing_price",
    "price",
    "last",
    "value",
    "index",
    "level",
)
# The columns a prices file's shape names (each found from names and values unless given).
PRICE_ROLES = ("date", "ticker", "price")
# Cells that mean "no price that day" in files people export.
MISSING = {"", "na", "n/a", "nan", "null", "none", "-", ".", "#n/a"}
# A wide file's price columns are series: bounded, so a stray matrix does not become 10,000.
MAX_SERIES = 500
# A number: digits with a decimal point, commas only between thousands (1,234.50), an optional
# dollar sign. A decimal comma (101,25) is refused rather than read as 10125.
_NUMBER = re.compile(r"^[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?$")


class InvalidPrices(DevmodeError):
    """The file cannot be read as closing prices; the message says what and how to fix it."""


class NoSuchPrices(DevmodeError):
    """No prices dataset has that name, or it has no such series."""


@dataclass(frozen=True)
class PriceShape:
    """Which columns hold what: a long file (``ticker`` and ``price``, or ``price`` alone for an
    index) or a wide one (``series``: one column of closes per ticker)."""

    date: str
    ticker: str | None = None
    price: str | None = None
    series: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.series:
            return f"wide: date {self.date!r}, {len(self.series)} series ({', '.join(self.series)})"
        if self.ticker:
            return f"long: date {self.date!r}, ticker {self.ticker!r}, close {self.price!r}"
        return f"one index series: date {self.date!r}, close {self.price!r}"


@dataclass(frozen=True)
class PriceSet:
    """A stored prices dataset's record."""

    id: int
    name: str
    source: str
    sha256: str
    row_count: int
    tickers: list[str]  # INDEX ('') for the index series
    first_day: str
    last_day: str
    notes: list[str]
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PriceSet:
        return cls(
            id=row["id"],
            name=row["name"],
            source=row["source"],
            sha256=row["sha256"],
            row_count=row["row_count"],
            tickers=json.loads(row["tickers"]),
            first_day=row["first_day"],
            last_day=row["last_day"],
            notes=json.loads(row["notes"]),
            created_at=row["created_at"],
        )

    @property
    def has_index(self) -> bool:
        return INDEX in self.tickers

    def series_names(self) -> list[str]:
        """The series as a person reads them: 'index' for the index series."""
        return [t or "index" for t in self.tickers]

    def to_dict(self) -> dict[str, Any]:
        """The record as ``datasets list --json`` prints it."""
        return {
            "name": self.name,
            "rows": self.row_count,
            "prices": self.series_names(),
            "first_day": self.first_day,
            "last_day": self.last_day,
            "source": self.source,
            "sha256": self.sha256,
            "created_at": self.created_at,
        }

    def describe(self) -> str:
        """'stocks: 6 series (GOOG, AAPL, ...), 2018-01-01 to 2019-12-30, 630 closes'"""
        shown = ", ".join(self.series_names()[:8]) + (", ..." if len(self.tickers) > 8 else "")
        return (
            f"{self.name}: {len(self.tickers)} series ({shown}), {self.first_day} to "
            f"{self.last_day}, {self.row_count:,} closes"
        )


# ----------------------------------------------------------------------------------------------
# Reading a file


def price_shape(
    columns: list[str],
    rows: list[dict[str, Any]],
    *,
    date_column: str | None = None,
    ticker_column: str | None = None,
    price_column: str | None = None,
) -> PriceShape:
    """The file's shape, from the columns given, their names, then their values."""
    for role, given in (("date", date_column), ("ticker", ticker_column), ("price", price_column)):
        if given and given not in columns:
            raise InvalidPrices(
                f"The {role} column {given!r} is not in the file. Columns are "
                f"{', '.join(columns)}. Pass one of those as --{role}-column."
            )
    date = date_column or column_named(columns, "date") or _date_like_column(columns, rows)
    if date is None:
        raise InvalidPrices(
            f"No date column found among {', '.join(columns)}. Expected a column of dates such "
            "as 2020-03-09 (named date, day, ...). Pass it as --date-column."
        )
    rest = [c for c in columns if c != date]
    ticker = ticker_column or column_named(rest, "ticker")
    price = price_column or column_named([c for c in rest if c != ticker], "", PRICE_NAMES)
    if ticker and not price:
        numeric = [c for c in rest if c != ticker and _numeric_column(c, rows)]
        if len(numeric) != 1:
            raise InvalidPrices(
                f"A long file (ticker column {ticker!r}) needs one column of closing prices; "
                f"found {len(numeric)} numeric columns ({', '.join(numeric) or 'none'}). Pass "
                "the close as --price-column."
            )
        price = numeric[0]
    if price:
        return PriceShape(date, ticker, price)
    series = tuple(c for c in rest if _numeric_column(c, rows))
    if not series:
        raise InvalidPrices(
            f"No column of prices found: besides the date ({date!r}), no column of "
            f"{', '.join(rest) or '(none)'} holds numbers. Expected a close per ticker (a wide "
            "file) or a ticker and a close column (a long file)."
        )
    if len(series) > MAX_SERIES:
        raise InvalidPrices(
            f"The file has {len(series):,} price columns; at most {MAX_SERIES} series are read. "
            "Keep the tickers you follow, or store the file long (date, ticker, close)."
        )
    return PriceShape(date, series=series)


def _date_like_column(columns: list[str], rows: list[dict[str, Any]]) -> str | None:
    for column in columns:
        values = [r.get(column) for r in rows if r.get(column) not in (None, "")]
        if values and all(
            isinstance(v, str) and not _NUMBER.match(v.strip()) and dates.parse_date(v)
            for v in values
        ):
            return column
    return None


def _numeric_column(column: str, rows: list[dict[str, Any]]) -> bool:
    values = [r.get(column) for r in rows if not _missing(r.get(column))]
    return bool(values) and all(_number(v) is not None for v in values)


def _missing(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = value.strip() if isinstance(value, str) else ""
    if text and _NUMBER.match(text) and any(c.isdigit() for c in text):
        return float(text.replace("$", "").replace(",", "").replace(" ", ""))
    return None


def read_closes(
    upload: Upload, shape: PriceShape
) -> tuple[dict[tuple[str, str], float], list[str]]:
    """Every close in the file as {(ticker, day): close}, and notes on what was read past.

    Refused, with the row: a date that cannot be read, a price that is not a number, a close
    of 0 or below, and two different closes for one ticker and day. A blank cell is a day
    without a price; the same close given twice is kept once.
    """
    closes: dict[tuple[str, str], float] = {}
    blank = repeated = 0
    row_number = 0
    for rows, _ in upload.batches():
        for row in rows:
            row_number += 1
            day = dates.parse_date(row.get(shape.date))
            if day is None:
                raise InvalidPrices(
                    f"{upload.source}: row {row_number:,} has the date {row.get(shape.date)!r} "
                    f"in {shape.date!r}, which cannot be read. Expected dates like "
                    "2020-03-09. Fix or remove the row."
                )
            if shape.series:
                cells = [(c, c, row.get(c)) for c in shape.series]
            else:
                # a row without a ticker belongs to the index series
                ticker = str(row.get(shape.ticker) or "").strip() if shape.ticker else INDEX
                cells = [(ticker, shape.price, row.get(shape.price))]
            for ticker, column, value in cells:
                if _missing(value):
                    blank += 1
                    continue
                close = _checked_close(value, upload.source, row_number, column)
                earlier = closes.get((ticker, day))
                if earlier is None:
                    closes[ticker, day] = close
                elif earlier == close:
                    repeated += 1
                else:
                    raise InvalidPrices(
                        f"{upload.source}: row {row_number:,} gives {ticker or 'the index'} a "
                        f"second close on {day} ({close:g}; an earlier row gave {earlier:g}). "
                        "Expected one close per ticker and day: keep the day's last close."
                    )
    if not closes:
        raise InvalidPrices(
            f"{upload.source} has no prices: every cell of {shape.describe()} is blank. "
            "Expected at least one closing price."
        )
    notes = []
    if blank:
        cells = "cell" if blank == 1 else "cells"
        notes.append(f"{blank:,} blank {cells} read as days without a price")
    if repeated:
        rows = "row repeated" if repeated == 1 else "rows repeated"
        notes.append(f"{repeated:,} {rows} an earlier close, kept once")
    return closes, notes


def _checked_close(value: Any, source: str, row_number: int, column: str) -> float:
    close = _number(value)
    if close is None:
        raise InvalidPrices(
            f"{source}: row {row_number:,} has {value!r} in {column!r}, which is not a price. "
            "Expected a number such as 101.25 (a decimal point; commas only between thousands, "
            "as in 1,234.50); leave a day without a price blank."
        )
    if close <= 0:
        raise InvalidPrices(
            f"{source}: row {row_number:,} has a close of {close:g} in {column!r}. A closing "
            "price is above 0: fix the row, or leave the cell blank for a day without a price."
        )
    return close


def largest_gap(closes: dict[tuple[str, str], float]) -> tuple[int, str, str] | None:
    """(days, ticker, last day before it) of the longest stretch without a close in any one
    series, or None when every series has fewer than two closes."""
    by_ticker: dict[str, list[str]] = {}
    for ticker, day in closes:
        by_ticker.setdefault(ticker, []).append(day)
    best = None
    for ticker, days in by_ticker.items():
        days.sort()
        for before, after in zip(days, days[1:], strict=False):
            gap = dates.days_between(before, after)
            if best is None or gap > best[0]:
                best = (gap, ticker, before)
    return best


# ----------------------------------------------------------------------------------------------
# Storing and reading back


def store_prices(
    db: Database,
    upload: Upload,
    name: str,
    *,
    date_column: str | None = None,
    ticker_column: str | None = None,
    price_column: str | None = None,
) -> PriceSet:
    """Read, check and store ``upload`` as the prices dataset ``name``: all or nothing."""
    shape = price_shape(
        upload.columns,
        upload.preview(200),
        date_column=date_column,
        ticker_column=ticker_column,
        price_column=price_column,
    )
    closes, notes = read_closes(upload, shape)
    gap = largest_gap(closes)
    if gap and gap[0] > 7:
        notes.append(f"the longest gap is {gap[0]} days ({gap[1] or 'index'} after {gap[2]})")
    tickers = sorted({t for t, _ in closes}, key=lambda t: (t != INDEX, t))
    days = sorted(d for _, d in closes)
    with db.atomic():
        ingest.validate_name(db, name)  # a text dataset's or a prices dataset's name
        set_id = (
            db[SETS_TABLE]
            .insert(
                {
                    "name": name,
                    "source": upload.source,
                    "format": upload.format,
                    "sha256": upload.sha256,
                    "size_bytes": upload.size_bytes,
                    "row_count": len(closes),
                    "tickers": json.dumps(tickers),
                    "first_day": days[0],
                    "last_day": days[-1],
                    "notes": json.dumps(notes),
                    "created_at": utc_now(),
                }
            )
            .last_pk
        )
        db[PRICES_TABLE].insert_all(
            (
                {"set_id": set_id, "ticker": t, "day": d, "close": c}
                for (t, d), c in sorted(closes.items())
            ),
            batch_size=5000,
        )
    return get_price_set(db, name)


def list_price_sets(db: Database) -> list[PriceSet]:
    """Every prices dataset, newest first."""
    return [PriceSet.from_row(r) for r in db[SETS_TABLE].rows_where(order_by="id desc")]


def price_set_names(db: Database) -> list[str]:
    """The prices datasets' names, newest first."""
    return [p.name for p in list_price_sets(db)]


def find_price_set(db: Database, name: str) -> PriceSet | None:
    row = next(db[SETS_TABLE].rows_where("lower(name) = lower(?)", [name]), None)
    return PriceSet.from_row(row) if row else None


def get_price_set(db: Database, name: str) -> PriceSet:
    found = find_price_set(db, name)
    if found is None:
        names = price_set_names(db)
        raise NoSuchPrices(
            f"No prices dataset called {name!r}. "
            + (f"Prices datasets are: {', '.join(names)}." if names else "There are none yet.")
            + " Store one with python -m devmode ingest FILE --name NAME --prices."
        )
    return found


def drop_price_set(db: Database, name: str) -> None:
    with db.atomic():
        found = get_price_set(db, name)
        db[PRICES_TABLE].delete_where("set_id = ?", [found.id])
        db[SETS_TABLE].delete(found.id)


def series_ticker(price_set: PriceSet, ticker: str | None) -> str:
    """The series for a rule or a chart: ``ticker``'s, or the index for all texts."""
    if ticker:
        if ticker not in price_set.tickers:
            raise NoSuchPrices(
                f"Prices dataset {price_set.name!r} has no series for {ticker}; it has "
                f"{', '.join(price_set.series_names())}. Store {ticker}'s closes, or pick one of those."
            )
        return ticker
    if not price_set.has_index:
        raise NoSuchPrices(
            f"A rule on all texts is set against the index series, and prices dataset "
            f"{price_set.name!r} has none (it has {', '.join(price_set.series_names())}). Pick a "
            "ticker, or store an index (a file with a date and one close column)."
        )
    return INDEX


def closes(db: Database, name: str, ticker: str) -> list[tuple[str, float]]:
    """(day, close) of one series, oldest first."""
    price_set = get_price_set(db, name)
    return [
        (day, close)
        for day, close in db.execute(
            f"select day, close from {PRICES_TABLE} where set_id = ? and ticker = ? order by day",
            [price_set.id, ticker],
        )
    ]


def tickers_without_texts(db: Database, price_set: PriceSet) -> list[str]:
    """The prices' tickers that no dataset's scored texts are filed under or mention (kept, and
    shown once texts about them are scored)."""
    known = {
        row[0]
        for row in db.execute(
            """select value from devmode_trend_days where scope = 'ticker' and n > 0
               union select ticker from devmode_mentions"""
        )
    }
    return [t for t in price_set.tickers if t != INDEX and t not in known]
