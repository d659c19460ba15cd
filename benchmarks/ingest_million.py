"""Ingest a million rows: wall time, rows/s and peak memory, for each upload format.

    $ .venv/bin/python benchmarks/ingest_million.py            # 1,000,000 rows
    $ .venv/bin/python benchmarks/ingest_million.py --rows 200000 --formats csv,jsonl

The rows are the shared Financial PhraseBank (50-agree) sentences repeated with a running number,
so lengths and characters are those of real financial text. Each format runs in its own process,
so each peak RSS is that format's alone. Prints a side-by-side table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_50agree.csv"


def make_file(path: Path, fmt: str, n_rows: int) -> None:
    with open(SOURCE, newline="", encoding="utf-8") as f:
        base = list(csv.DictReader(f))

    def rows():
        for i in range(n_rows):
            row = base[i % len(base)]
            yield {
                "text": f"{row['text']} [{i}]",
                "label": row["label"],
                "date": f"2020-01-{i % 28 + 1:02d}",
            }

    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(
                f, ["text", "label", "date"], delimiter="," if fmt == "csv" else "\t"
            )
            writer.writeheader()
            writer.writerows(rows())
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for row in rows():
                f.write(json.dumps(row) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer, batch = None, []
        for row in rows():
            batch.append(row)
            if len(batch) == 100_000:
                table = pa.Table.from_pylist(batch)
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
                batch = []
        if batch:
            table = pa.Table.from_pylist(batch)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        writer.close()


def measure(path: str, db_path: str) -> None:
    """Child process: ingest one file and print a JSON line of figures."""
    from devmode.data import ingest, readers
    from devmode.db import open_db

    start = time.perf_counter()
    upload = readers.read_upload(path, max_bytes=1 << 40)
    with open_db(db_path) as db:
        dataset = ingest.insert_upload(
            db, upload, "bench", ingest.ColumnMapping(text="text", label="label", date="date")
        )
        seconds = time.perf_counter() - start
        stats_start = time.perf_counter()
        ingest.dataset_stats(db, "bench")
        stats_seconds = time.perf_counter() - stats_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": dataset.row_count,
                "seconds": seconds,
                "stats_seconds": stats_seconds,
                "peak_rss_mb": peak_mb,
                "size_mb": upload.size_bytes / 1e6,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,tsv,jsonl,parquet")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    print(f"Ingesting {args.rows:,} rows; {sys.platform}, Python {sys.version.split()[0]}")
    print(
        f"{'format':<8} {'file MB':>8} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12} {'stats s':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            path = Path(tmp) / f"rows.{fmt}"
            make_file(path, fmt, args.rows)
            db_path = Path(tmp) / f"{fmt}.db"
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), str(db_path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{fmt:<8} {r['size_mb']:>8.1f} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
                f"{r['peak_rss_mb']:>12.0f} {r['stats_seconds']:>8.2f}"
            )
            path.unlink()
            db_path.unlink()


if __name__ == "__main__":
    main()
