"""A simulated day: a local feed replays the 9,958 shared Benzinga headlines in the order of
their timestamps, sped up, while a real watcher polls it, scores, evaluates and delivers.

    $ .venv/bin/python benchmarks/simulated_day.py                   # 24 h in 20 minutes
    $ .venv/bin/python benchmarks/simulated_day.py --minutes 5 --db /tmp/bench/bench.db

The headlines (eleven years of them) are spread over one simulated day in timestamp order and
released at that pace; the feed shows the latest ``--window`` items, as a real feed does, so a
watcher that falls behind misses items. Every ``--sample`` seconds the watcher process's
resident memory is read from /proc. A rule (share negative above 30% in a day, at least 10
texts) delivers to a local receiver.

Goals: every headline stored once; memory flat; no alert delivered twice. Expected before
measuring: all three, with RSS settling at about 1 GB (torch and the model) once the first
scoring is done. Measured: stored once and alerted once, yes; RSS settled lower (about 720 MB)
but later: it climbs from about 540 MB in the 2nd hour while the stories' comparison window
fills (each pass compares new rows with the latest ``stories.CANDIDATE_STORIES`` = 5,000
stories, reached about half-way through the day), then stays flat. So flatness is judged from
the hour the window is full (the 12th) to the last, and the 2nd hour is printed beside it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from feed_to_alert import HEADLINES, Local, _scored, ensure_model, rss  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20, help="Real minutes for 24 hours.")
    parser.add_argument("--window", type=int, default=300, help="Items the feed shows.")
    parser.add_argument("--every", type=int, default=10, help="The source's poll interval (s).")
    parser.add_argument("--sample", type=float, default=5, help="Seconds between RSS readings.")
    parser.add_argument("--db", help="A devmode database with an active sentiment model.")
    args = parser.parse_args()

    from devmode.data import sources
    from devmode.db import open_db
    from devmode.monitor import alerts, delivery, watcher

    with open(HEADLINES, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["timestamp"])
    tmp = tempfile.TemporaryDirectory()
    db_path = args.db or str(Path(tmp.name) / "bench.db")
    ensure_model(db_path)
    local = Local()
    with open_db(db_path) as db:
        sources.add_source(
            db,
            "day_feed",
            feed=local.url("/feed.xml"),
            settings=sources.SourceSettings(every=args.every),
        )
    job = watcher.start_watching(db_path)
    seconds = args.minutes * 60
    items = [
        (r["text"], f"urn:day:{i}", dt.datetime.fromisoformat(r["timestamp"]))
        for i, r in enumerate(rows)
    ]
    print(
        f"{len(items):,} headlines over {args.minutes:g} minutes ({len(items) / seconds:.1f}/s); "
        f"the feed shows the latest {args.window}; polled every {args.every} s; watcher "
        f"process {job.pid}."
    )
    memory: list[tuple[float, float]] = []
    start = time.monotonic()
    released = 0
    rule_added = False
    next_sample = start
    while released < len(items):
        now = time.monotonic() - start
        due = min(len(items), int(len(items) * now / seconds) + 1)
        if due > released:
            released = due
            local.feed = rss(items[max(0, released - args.window) : released])
        if not rule_added and "day_feed" in _tables(db_path):
            with open_db(db_path) as db:
                rule = alerts.add_alert_rule(
                    db,
                    "day_feed",
                    kind="share_negative",
                    threshold=0.3,
                    min_volume=10,
                    period="day",
                )
                delivery.add_channel(db, rule.id, webhook=local.url("/hook"), format="json")
            rule_added = True
        if time.monotonic() >= next_sample:
            memory.append((time.monotonic() - start, rss_mb(job.pid)))
            next_sample += args.sample
        time.sleep(0.2)
    time.sleep(args.every * 2 + 30)  # the last poll, scoring and deliveries
    memory.append((time.monotonic() - start, rss_mb(job.pid)))
    with open_db(db_path) as db:
        stored = db["day_feed"].count
        log = delivery.list_deliveries(db, "day_feed", limit=100_000)
        watcher.stop_watching(db)
        dataset_id = db.execute("select id from devmode_datasets where name = 'day_feed'")
        keys = db["devmode_source_items"].count_where("dataset_id = ?", list(dataset_id.fetchone()))
    scored = _scored(db_path, "day_feed")
    received = Counter(body["alert"]["period_start"] for _, body in local.alerts)
    hour = seconds / 24
    second = _mean_in(memory, hour, 2 * hour)
    full = _mean_in(memory, 11 * hour, 12 * hour)  # the stories' window is full by now
    last = _mean_in(memory, seconds - hour, seconds + 3600)
    growth = last / full - 1
    print("\nwatcher RSS (MB) by simulated hour:")
    print(" ".join(f"{_mean_in(memory, h * hour, (h + 1) * hour):.0f}" for h in range(24)))
    print(f"\n{'':<34} {'value':>12}")
    print(f"{'headlines released':<34} {len(items):>12,}")
    print(f"{'rows stored (keys)':<34} {stored:>12,} ({keys:,})")
    print(f"{'rows scored':<34} {scored:>12,}")
    print(f"{'watcher RSS, 2nd hour (MB)':<34} {second:>12,.0f}")
    print(f"{'watcher RSS, 12th hour (MB)':<34} {full:>12,.0f}")
    print(f"{'watcher RSS, last hour (MB)':<34} {last:>12,.0f} ({growth:+.1%} on the 12th)")
    print(f"{'watcher RSS, peak (MB)':<34} {max(m for _, m in memory):>12,.0f}")
    print(f"{'alerts delivered (periods)':<34} {sum(received.values()):>12,} ({len(received):,})")
    print(f"{'deliveries logged':<34} {len(log):>12,}")
    print(
        f"goals: every headline once: {'met' if stored == len(items) == keys else 'NOT met'}; "
        f"memory flat (12th to last hour within 10%): {'met' if abs(growth) <= 0.10 else 'NOT met'}; "
        f"no alert twice: {'met' if all(n == 1 for n in received.values()) else 'NOT met'}"
    )


def _mean_in(memory: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [m for t, m in memory if start <= t < end]
    return sum(inside) / len(inside) if inside else float("nan")


def _tables(db_path: str) -> list[str]:
    from devmode.db import open_db

    with open_db(db_path) as db:
        return db.table_names()


if __name__ == "__main__":
    main()
