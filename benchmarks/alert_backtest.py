"""alerts backtest over a million scored rows: every scope, from the daily rollup and, side by
side, from the predictions themselves (what a backtest without the rollup would read).

    $ .venv/bin/python benchmarks/alert_backtest.py                 # 1,000,000 rows
    $ .venv/bin/python benchmarks/alert_backtest.py --rows 100000   # a quick look

The rows are trend_million.py's (dates over 2009-2020, 37 tickers, 20 topics, random
probabilities), plus a second dataset of the same size without a ticker column whose texts
name a cashtag, for the watchlist scope. Each backtest runs 5 times (median and slowest, in
milliseconds); the rule is a weekly spike (2 standard deviations over 8 weeks), with the three
most negative stories of each fire, as the CLI and the Preview ask for them.

Goal (issue 31): at most 1 s at a million rows for a rule on all texts, one ticker or one topic.
Expected before measuring: 20-80 ms from the rollup for those (a few thousand days, then a
story query per fire through the covering index); 1-3 s for the same read from the predictions;
a ticker and a topic together (not in the rollup) 100-400 ms from the ticker's index; a
watchlist ticker (mentions joined to the predictions) 0.5-2 s.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu  # noqa: E402
from trend_million import TICKERS, build, timed  # noqa: E402

RULE = {"kind": "spike", "threshold": 2.0, "window": 8, "period": "week", "min_volume": 5}


def build_nameless(db_path: Path, n_rows: int) -> None:
    """A dataset of ``n_rows`` without a ticker column, each text naming a cashtag, scored
    with random probabilities, and T07 on the watchlist (so its texts are tagged)."""
    from devmode.data import ingest, readers
    from devmode.db import open_db, utc_now
    from devmode.monitor import watchlist

    rng = random.Random(1)
    csv_path = db_path.with_name("nameless.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "text"])
        for i in range(n_rows):
            day = f"{2009 + rng.randrange(12)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}"
            writer.writerow([day, f"story {i} on ${rng.choice(TICKERS)}"])
    with open_db(db_path) as db:
        dataset = ingest.insert_upload(
            db, readers.read_upload(csv_path), "nameless", ingest.ColumnMapping("text", date="date")
        )
        stamp = utc_now()
        rows = db.execute('select rowid, date from "nameless"').fetchall()
        with db.atomic():
            db.conn.executemany(
                """insert into devmode_predictions (dataset_id, task, row_id, model_id, label,
                   probabilities, sentiment, is_negative, date, created_at)
                   values (?, 'sentiment', ?, 1, ?, '[]', ?, ?, ?, ?)""",
                [
                    (dataset.id, rowid, "neutral", rng.uniform(-1, 1), int(rng.random() < 0.3),
                     date, stamp)
                    for rowid, date in rows
                ],
            )  # fmt: skip
        watchlist.add_entry(db, "T07")
    csv_path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from devmode.db import open_db
    from devmode.monitor import alerts, backtest, trends

    print(f"CPU: {cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "backtest.db"
        start = time.perf_counter()
        build(db_path, args.rows, bulk=True)
        build_nameless(db_path, args.rows)
        print(f"2 x {args.rows:,} rows built in {time.perf_counter() - start:.0f} s")
        scopes = [
            ("all texts", "headlines", {}),
            ("one ticker", "headlines", {"ticker": "T07"}),
            ("one topic", "headlines", {"topic": "topic 03"}),
            ("ticker + topic", "headlines", {"ticker": "T07", "topic": "topic 03"}),
            ("watchlist ticker", "nameless", {"ticker": "T07"}),
            ("all texts, daily", "headlines", {"period": "day", "window": 20}),
            ("all texts, share > 0.3", "headlines", {"kind": "share_negative", "threshold": 0.3}),
        ]
        rollup_scope = trends._rollup_scope
        print(
            f"\n{'scope':<26} {'fires':>6} {'rollup ms':>10} {'max':>7} {'rows ms':>9} {'max':>7}"
        )
        with open_db(db_path) as db:
            for name, dataset, extra in scopes:
                settings = alerts.RuleSettings(**{**RULE, **extra})
                run = lambda d=dataset, s=settings: backtest.backtest(db, d, s)["fires"]  # noqa: E731
                median, slowest, fires = timed(run)
                trends._rollup_scope = lambda *a: None  # every trend from the predictions
                try:
                    rows_median, rows_slowest, _ = timed(run)
                finally:
                    trends._rollup_scope = rollup_scope
                print(
                    f"{name:<26} {fires:>6} {median:>10.1f} {slowest:>7.1f} "
                    f"{rows_median:>9.1f} {rows_slowest:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
