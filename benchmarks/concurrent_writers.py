"""Many devmode writers on one database file: 2, 4 and 8 processes of mixed writes at once.

    $ .venv/bin/python benchmarks/concurrent_writers.py                 # a minute per size
    $ .venv/bin/python benchmarks/concurrent_writers.py --seconds 10 --processes 2,4

Each process loops over the writes devmode makes, through devmode's own functions:

- **ingest**: a new 300-row dataset, one transaction;
- **split**: the shared labelled dataset split again with another seed (3,000 rows updated);
- **scoring**: a new 400-row dated dataset scored in chunks of 100 rows (one transaction
  each) by the active sentiment model. The model is a constant scorer: the benchmark measures
  the database, and the chunk writes are the same as with a real model;
- **chat**: an exchange added to one conversation that every process shares (each exchange
  reads the conversation's length and writes the next two positions).

Every write is timed from the call to its return: the wait for the write lock is in it. After
the run the parent checks what the processes say they wrote against the file: every ingested
row, every prediction, every chat message at its own position, ``integrity_check``.

Expected before measuring (issue 13): no "database is locked" at any size (writers queue on
``BEGIN IMMEDIATE``); writes serialise, so the p95 wait grows with the number of processes, to
a few hundred milliseconds with 8 on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = ["negative", "neutral", "positive"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def labelled_rows(rng: random.Random, n: int) -> list[dict]:
    words = ["rates", "bonds", "profit", "loss", "shares", "yield", "growth", "default"]
    return [
        {
            "text": " ".join(rng.choice(words) for _ in range(10)) + f" {i}",
            "label": rng.choice(LABELS),
        }
        for i in range(n)
    ]


def dated_rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {**row, "date": f"2020-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}
        for row in labelled_rows(rng, n)
    ]


class ConstantScorer:
    """Scores every text the same: the chunk writes are what is measured, not a model."""

    label_names = LABELS

    def score(self, texts, **kwargs):
        import numpy as np

        from devmode.models.inference import Scores

        probabilities = np.tile(np.array([[0.2, 0.5, 0.3]], dtype=np.float32), (len(texts), 1))
        return Scores(["neutral"] * len(texts), probabilities, list(LABELS))


def set_up(db_path: Path, folder: Path) -> None:
    """A shared labelled dataset, an active sentiment model, and a shared conversation."""
    from devmode.chat import conversations, limits
    from devmode.data import ingest, readers
    from devmode.db import open_db
    from devmode.models import registry, runs

    rng = random.Random(0)
    with open_db(db_path) as db:
        upload = readers.read_upload(write_csv(folder / "shared.csv", labelled_rows(rng, 3000)))
        ingest.insert_upload(db, upload, "shared", ingest.ColumnMapping("text", "label"))
        record = {"dataset": "shared", "config": {}, "test": None}
        run_id = runs.add_imported_run(db, record, "concurrent_writers benchmark")
        registry.register_model(db, run_id, "shared", LABELS, folder / "no-model")
        registry.promote(db, run_id, "sentiment")
        conversations.create_conversation(db, limits.ChatSettings())


def worker(db_path: Path, folder: Path, index: int, seconds: float, out: Path) -> None:
    """One process's loop of writes; what it did goes to ``out`` as JSON."""
    from devmode.chat import context, conversations, limits, replies
    from devmode.data import ingest, readers, splits
    from devmode.db import open_db
    from devmode.monitor import monitoring

    monitoring.CHUNK_ROWS = 100
    rng = random.Random(index)
    waits: dict[str, list[float]] = {"ingest": [], "split": [], "scoring": [], "chat": []}
    wrote = {"datasets": {}, "scored": {}, "exchanges": 0}
    errors: list[str] = []
    settings = limits.ChatSettings()
    plan = context.ContextPlan([context.ContextPart("prompt", "user", "hi", 1, "kept")], 2048)
    reply = replies.Reply("hello", "end", "the model ended its reply", 1, 1, 0.01, 0.02)
    deadline = time.monotonic() + seconds
    round_ = 0

    def timed(kind: str, write, *args) -> object:
        start = time.perf_counter()
        try:
            result = write(*args)
        except sqlite3.OperationalError as e:
            errors.append(f"{kind}: {e}")
            return None
        waits[kind].append(time.perf_counter() - start)
        return result

    class ChunkClock:
        """Times each scoring chunk: from the end of the one before to its own end."""

        def __init__(self):
            self.last = time.perf_counter()

        def __call__(self, done: int, total: int) -> None:
            waits["scoring"].append(time.perf_counter() - self.last)
            self.last = time.perf_counter()

    labelled = ingest.ColumnMapping("text", "label")
    dated_roles = ingest.ColumnMapping("text", "label", "date")
    while time.monotonic() < deadline:
        round_ += 1
        name, dated = f"p{index}_r{round_}", f"p{index}_r{round_}_dated"
        with open_db(db_path) as db:
            rows = labelled_rows(rng, 300)
            upload = readers.read_upload(write_csv(folder / f"{name}.csv", rows))
            if timed("ingest", ingest.insert_upload, db, upload, name, labelled):
                wrote["datasets"][name] = len(rows)
            split = splits.SplitSpec(seed=rng.randint(0, 10_000))
            timed("split", ingest.resplit, db, "shared", split)
            rows = dated_rows(rng, 400)
            upload = readers.read_upload(write_csv(folder / f"{dated}.csv", rows))
            if timed("ingest", ingest.insert_upload, db, upload, dated, dated_roles):
                wrote["datasets"][dated] = len(rows)
                chunks_before = len(waits["scoring"])
                try:
                    summary = monitoring.score_dataset(
                        db, dated, scorer=ConstantScorer(), on_progress=ChunkClock()
                    )
                    wrote["scored"][dated] = summary.scored
                except sqlite3.OperationalError as e:
                    errors.append(f"scoring: {e}")
                    del waits["scoring"][chunks_before:]
            question = f"question {index}.{round_}"
            failures = len(errors)
            timed("chat", conversations.add_exchange, db, 1, question, reply, plan, settings)
            wrote["exchanges"] += len(errors) == failures
    out.write_text(json.dumps({"waits": waits, "wrote": wrote, "errors": errors}))


def check(db_path: Path, results: list[dict]) -> tuple[bool, str]:
    """Whether every row the processes wrote is in the file, and the file is whole."""
    from devmode.db import open_db

    with open_db(db_path) as db:
        problems = []
        if db.execute("pragma integrity_check").fetchone()[0] != "ok":
            problems.append("integrity_check failed")
        for result in results:
            for name, n in result["wrote"]["datasets"].items():
                if not db[name].exists() or db[name].count != n:
                    problems.append(f"dataset {name}: expected {n} rows")
            for name, n in result["wrote"]["scored"].items():
                scored = db.execute(
                    "select count(*) from devmode_predictions p join devmode_datasets d "
                    "on d.id = p.dataset_id where d.name = ?",
                    [name],
                ).fetchone()[0]
                if scored != n:
                    problems.append(f"predictions of {name}: {scored}, expected {n}")
        exchanges = sum(r["wrote"]["exchanges"] for r in results)
        positions = [
            r[0] for r in db.execute("select position from devmode_chat_messages order by 1")
        ]
        if positions != list(range(2 * exchanges)):
            problems.append(f"chat: {len(positions)} messages for {exchanges} exchanges, or gaps")
    return not problems, "; ".join(problems[:3])


def run_size(processes: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_path = folder / "team.db"
        set_up(db_path, folder)
        outs = [folder / f"worker-{i}.json" for i in range(processes)]
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(i),
                    "--db",
                    str(db_path),
                    "--folder",
                    tmp,
                    "--seconds",
                    str(seconds),
                    "--out",
                    str(outs[i]),
                ],
                cwd=ROOT,
            )
            for i in range(processes)
        ]
        for child in children:
            child.wait()
        results = [json.loads(out.read_text()) for out in outs]
        ok, problems = check(db_path, results)
    waits = [w for r in results for kind in r["waits"].values() for w in kind]
    locked = [e for r in results for e in r["errors"] if "locked" in e]
    quantiles = statistics.quantiles(waits, n=100) if len(waits) > 1 else [0] * 99
    return {
        "processes": processes,
        "writes": len(waits),
        "locked": len(locked),
        "other errors": sum(len(r["errors"]) for r in results) - len(locked),
        "p50 ms": quantiles[49] * 1000,
        "p95 ms": quantiles[94] * 1000,
        "max ms": max(waits, default=0) * 1000,
        "all rows there": "yes" if ok else f"NO: {problems}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="How long each size runs.")
    parser.add_argument("--processes", default="2,4,8", help="Sizes to run, comma separated.")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(Path(args.db), Path(args.folder), args.worker, args.seconds, Path(args.out))
        return
    rows = [run_size(int(n), args.seconds) for n in args.processes.split(",")]
    columns = list(rows[0])
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(f"{v:,.0f}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
