"""Trend latency with a million scored rows: every period and filter the Monitor page offers.

    $ .venv/bin/python benchmarks/trend_million.py               # 1,000,000 rows
    $ .venv/bin/python benchmarks/trend_million.py --rows 200000
    $ .venv/bin/python benchmarks/trend_million.py --rows 10000000 --bulk   # issue 14's goal

The dataset is ingested through devmode (dates spread over 2009-2020, 37 tickers); the
predictions are written straight into ``devmode_predictions`` with random probabilities (a
model would take an hour on this CPU, and the query cost does not depend on the values): one
sentiment and one topic prediction per row, 20 topics, as two scorings would leave them.
Each query runs 5 times; the table gives the median and the slowest, in milliseconds.
Goals: a trend chart for any filter in under half a second, at a million rows (issue 5) and at
ten million (issue 14). Expected before measuring the rollup (``devmode_trend_days``): every
single-scope trend in tens of milliseconds at any size (a few thousand days per scope), a ticker
and a topic together still read from the covering index (about 1/740 of the rows), writes about
twice as slow per sentiment row (three small upserts), which scoring at a few hundred texts a
second does not notice.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICKERS = [f"T{i:02d}" for i in range(37)]
TOPICS = [f"topic {i:02d}" for i in range(20)]
CHUNK = 100_000


def build(db_path: Path, n_rows: int, bulk: bool) -> None:
    from devmode.data import ingest, readers
    from devmode.db import open_db, utc_now
    from devmode.monitor.rollup import fill_trend_days, trend_triggers

    rng = random.Random(0)
    start = dt.date(2009, 1, 1)
    csv_path = db_path.with_suffix(".csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "ticker", "text"])
        for i in range(n_rows):
            day = start + dt.timedelta(days=rng.randrange(4380))
            writer.writerow([day.isoformat(), rng.choice(TICKERS), f"headline number {i}"])
    with open_db(db_path) as db:
        dataset = ingest.insert_upload(
            db,
            readers.read_upload(csv_path),
            "headlines",
            ingest.ColumnMapping("text", date="date", ticker="ticker"),
        )
        db.execute("pragma cache_size = -2000000")  # 2 GB: the indexes take random inserts
        stamp, written = utc_now(), time.perf_counter()
        trend_triggers(db, on=not bulk)
        last = 0
        while chunk := db.execute(  # no cursor held open across the writes: the WAL resets
            'select rowid, date, ticker from "headlines" where rowid > ? order by rowid limit ?',
            [last, CHUNK],
        ).fetchall():
            last = chunk[-1][0]
            with db.atomic():  # as scoring writes: a chunk per transaction, triggers and all
                for task in ("topic", "sentiment"):
                    db.conn.executemany(
                        """insert into devmode_predictions (dataset_id, task, row_id, model_id,
                           label, probabilities, sentiment, is_negative, date, ticker, topic,
                           repeat, created_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        [_record(rng, dataset.id, task, *row, stamp) for row in chunk],
                    )
        if bulk:
            with db.atomic():
                fill_trend_days(db)
                trend_triggers(db, on=True)
        seconds = time.perf_counter() - written
        how = "then the rollup filled in one pass" if bulk else "the rollup kept by its triggers"
        print(f"predictions written in {seconds:.0f} s ({2 * n_rows / seconds:,.0f} rows/s), {how}")
    csv_path.unlink()


def _record(rng, dataset_id, task, row_id, date, ticker, stamp) -> tuple:
    p = [rng.random() for _ in range(3)]
    total = sum(p)
    neg, neu, pos = (x / total for x in p)
    topic = TOPICS[row_id % len(TOPICS)]
    sentiment = task == "sentiment"
    return (
        dataset_id,
        task,
        row_id,
        1 if sentiment else 2,
        ["negative", "neutral", "positive"][max(range(3), key=lambda k: (neg, neu, pos)[k])]
        if sentiment
        else topic,
        json.dumps([neg, neu, pos]),
        pos - neg if sentiment else None,
        int(neg > max(neu, pos)) if sentiment else None,
        _day(date),
        ticker,
        topic if sentiment else None,
        int(row_id % 20 == 0) if sentiment else None,  # one row in 20 repeats a story
        stamp,
    )


@functools.cache
def _day(value: str) -> str | None:
    from devmode.monitor import monitoring

    return monitoring.parse_date(value)


def timed(fn, repeats: int = 5) -> tuple[float, float, int]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1000, max(seconds) * 1000, len(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--bulk",
        action="store_true",
        help="Write the predictions with the rollup's triggers off, then fill it in one pass "
        "(as the migration does for a database that had predictions): the same tables, built "
        "in a third of the time; the queries timed are the same.",
    )
    args = parser.parse_args()
    from devmode.db import open_db
    from devmode.monitor import trends

    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "trend.db"
        start = time.perf_counter()
        build(db_path, args.rows, args.bulk)
        print(
            f"{args.rows:,} rows ingested and scored (synthetic) in {time.perf_counter() - start:.0f} s"
        )
        print(f"\n{'query':<44} {'median ms':>10} {'max ms':>8} {'points':>7}")
        with open_db(db_path) as db:
            cases = []
            for period in trends.PERIODS:
                for label, filters in (
                    ("all", {}),
                    ("ticker", {"ticker": "T07"}),
                    ("topic", {"topic": "topic 03"}),
                    ("ticker + topic", {"ticker": "T07", "topic": "topic 03"}),
                    ("stories", {"stories": True}),
                ):
                    cases.append(
                        (
                            f"sentiment_trend {period}, {label}",
                            lambda p=period, f=filters: trends.sentiment_trend(
                                db, "headlines", period=p, **f
                            ),
                        )
                    )
            cases += [
                (
                    f"trend_by {column}, week",
                    lambda c=column: trends.trend_by(db, "headlines", c, period="week"),
                )
                for column in ("ticker", "topic")
            ]
            cases += [
                ("sentiment_by_topic, all", lambda: trends.sentiment_by_topic(db, "headlines")),
                (
                    "sentiment_by_topic, ticker",
                    lambda: trends.sentiment_by_topic(db, "headlines", ticker="T07"),
                ),
                ("scored_tickers", lambda: trends.scored_tickers(db, "headlines")),
                ("scored_topics", lambda: trends.scored_topics(db, "headlines")),
                (
                    "texts_in_period week, all",
                    lambda: trends.texts_in_period(
                        db, "headlines", period="week", start="2015-06-01"
                    ),
                ),
            ]
            for name, fn in cases:
                median, slowest, n = timed(fn)
                print(f"{name:<44} {median:>10.1f} {slowest:>8.1f} {n:>7}", flush=True)


if __name__ == "__main__":
    main()
