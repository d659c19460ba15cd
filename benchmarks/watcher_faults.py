"""A watcher that keeps going: ten sources polled for ten minutes while three of them fail in
rotating ways. Do the good sources get every row, do the failing ones show their error and
back off, and does the watcher never exit?

    $ .venv/bin/python benchmarks/watcher_faults.py                  # 10 minutes, 20 s deadline
    $ .venv/bin/python benchmarks/watcher_faults.py --minutes 2 --fetch-timeout 5

The sources (tests/fault_support.py, which tests/monitor/test_watcher.py runs for ten seconds): five
feeds on 127.0.0.1 that publish an item every second and two watched folders that get a new
file every three seconds, all polled every 5 s; two feeds that rotate every second through an
empty body, a body that stalls (a byte a second), HTTP 500, a web page and an address nobody
answers; and a folder that gets, in turn, a file without a text column, a file whose name is
not UTF-8 and holds binary garbage, and an empty file. The watcher runs in this process (the
loop the worker runs), without a model, so what is measured is polling.

Expected before measuring: no row missing, no exit. A stalled feed costs its pass the whole
deadline (20 s), so the longest gap between passes is about 20 s (two stalls in one pass: 40
s); the failing feeds back off to 5, 10, 20 ... up to 3,600 s, so over ten minutes each is
polled about seven times; the good sources about 120 times each (fewer in passes a stall
holds up).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from machine import cpu  # noqa: E402

from devmode.data import feeds  # noqa: E402
from devmode.db import open_db  # noqa: E402
from tests.fault_support import FaultFarm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fetch-timeout", type=float, default=feeds.FETCH_TIMEOUT_S)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "faults.db")
        with open_db(db_path):
            pass
        farm = FaultFarm(db_path, Path(tmp))
        try:
            report = farm.run(args.minutes * 60, fetch_timeout=args.fetch_timeout)
        finally:
            farm.close()
    print(f"CPU: {cpu()}")
    print(
        f"{report.seconds:.0f} s watched, {report.passes} passes, at most {report.longest_gap_s:.1f} s "
        "from the end of one pass to the end of the next; "
        f"watcher still running when stopped: {report.watcher_alive}"
    )
    header = ("source", "dataset", "kind", "faults", "published", "stored", "failures")
    widths = [6, 10, 6, 62, 9, 6, 8]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in report.sources:
        values = [row[h] if h != "published" or row["good"] else "-" for h in header]
        print("  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)))
    print("\nHealth of the failing sources:")
    for row in (r for r in report.sources if not r["good"]):
        print(f"  {row['dataset']}: {row['health'][:300]}")
    missing = report.missing()
    print(f"\nRows missing from good sources: {missing or 'none'}")
    sys.exit(1 if missing or not report.watcher_alive else 0)


if __name__ == "__main__":
    main()
