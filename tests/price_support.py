"""Dated headlines scored by a word list, and price series generated to line up with them: what
the backtest, prices and lead/lag tests share."""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

from tests.conftest import HEADLINES, read_slice, write_csv

NEGATIVE = {
    "down", "falls", "fall", "lower", "lowers", "cut", "cuts", "loss", "misses", "miss",
    "drop", "drops", "weak", "sell", "downgrade", "downgrades", "downgraded", "lawsuit",
    "slump", "decline", "declines", "plunge", "plunges", "short", "bearish",
}  # fmt: skip
POSITIVE = {
    "up", "rises", "rise", "higher", "beats", "beat", "raises", "raise", "gains", "gain",
    "buy", "upgrade", "upgrades", "upgraded", "strong", "record", "growth", "bullish", "jumps",
}  # fmt: skip


class LexiconScorer:
    """A scorer for any text: negative when it has more negative than positive words from the
    lists above, positive for the reverse, else neutral."""

    label_names = ["negative", "neutral", "positive"]

    def score(self, texts):
        import numpy as np

        from devmode.models.inference import Scores

        rows = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            balance = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
            rows.append(
                [0.8, 0.1, 0.1]
                if balance < 0
                else [0.1, 0.1, 0.8]
                if balance > 0
                else [0.1, 0.8, 0.1]
            )
        probabilities = np.array(rows, dtype=np.float32)
        return Scores(
            [self.label_names[int(p.argmax())] for p in probabilities],
            probabilities,
            self.label_names,
        )


def headline_slice(tickers=("AAPL", "ABBV"), since="2018-01-01") -> list[dict]:
    """The shared dated headlines of ``tickers`` since ``since`` (about 800 rows, 2018-2020)."""
    rows = read_slice(HEADLINES, 10_000)
    return [
        {k: r[k] for k in ("date", "ticker", "text", "source")}
        for r in rows
        if r["ticker"] in tickers and r["date"] >= since
    ]


def store_headlines(db_path, folder: Path, name: str = "wire") -> list[dict]:
    """``headline_slice()`` stored as dataset ``name`` (text, date, ticker), not scored."""
    from devmode.data import ingest
    from devmode.data.readers import read_upload
    from devmode.db import open_db

    rows = headline_slice()
    path = write_csv(folder / f"{name}.csv", rows)
    mapping = ingest.ColumnMapping("text", date="date", ticker="ticker")
    with open_db(db_path) as db:
        ingest.insert_upload(db, read_upload(path), name, mapping)
    return rows


def weekdays(first: str, last: str) -> list[str]:
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    out = []
    while day <= end:
        if day.weekday() < 5:
            out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


def week_of(day: str) -> str:
    date = dt.date.fromisoformat(day)
    return (date - dt.timedelta(days=date.weekday())).isoformat()


def closes_after(weeks_falling: set[str], first: str, last: str, *, fall=0.05, rise=0.001):
    """{day: close} on weekdays from ``first`` to ``last``: every day of a week closes at that
    week's level, and the week after each of ``weeks_falling`` is ``fall`` lower, the others
    ``rise`` higher; so each such week's forward return over one week is exactly -fall."""
    level, current, out = 100.0, None, {}
    for day in weekdays(first, last):
        week = week_of(day)
        if current is not None and week != current:
            level *= (1 - fall) if current in weeks_falling else (1 + rise)
        current = week
        out[day] = level
    return out


def long_price_file(path: Path, series: dict[str, dict[str, float]]) -> Path:
    """A long prices CSV (date, ticker, close); the ticker '' is written as an index file."""
    rows = [
        {"date": day, "ticker": ticker, "close": round(close, 6)}
        for ticker, closes in series.items()
        for day, close in closes.items()
    ]
    return write_csv(path, rows)


def plotly_stocks(path: Path) -> Path:
    """plotly.data.stocks() as its real file: weekly closes 2018-2019 of six US stocks, wide."""
    import plotly

    packaged = Path(plotly.__file__).parent / "package_data" / "datasets" / "stocks.csv.gz"
    path.write_bytes(gzip.decompress(packaged.read_bytes()))
    return path
