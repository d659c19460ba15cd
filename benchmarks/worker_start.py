"""A background job's wait: a worker started as a new process against one forked by the warm
launcher (``devmode/launcher.py``).

    .venv/bin/python benchmarks/worker_start.py [--repeat 3]

Each job is a real training run started as *Start training* starts it (``worker.start_run``):
the embedded MiniLM, 1 epoch over 45 PhraseBank rows at 32 tokens, so that the training itself
is short and the start is a large part of the wait. The sides take turns; the launcher is
started and warmed (one job) before the first timed turn, as it is after a page's first job.

    side                          start -> running (s)   start -> completed (s)
    a new process per worker      ...                    ...
    forked by the warm launcher   ...                    ...

Expected before measuring: the launcher saves the imports a worker makes before its first step,
torch and transformers' modelling code, about 3.5-4.5 s on 2 cores, on both columns alike.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

from devmode import launcher  # noqa: E402
from devmode.data import ingest, readers  # noqa: E402
from devmode.db import open_db  # noqa: E402
from devmode.finetune import worker  # noqa: E402
from devmode.models import runs  # noqa: E402
from devmode.models.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHRASEBANK = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.csv"
SIDES = {"0": "a new process per worker", "1": "forked by the warm launcher"}


def store_slice(db_path: Path, folder: Path) -> None:
    with open(PHRASEBANK, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    picked = [
        r
        for label in ("negative", "neutral", "positive")
        for r in [x for x in rows if x["label"] == label][:15]
    ]
    path = folder / "slice.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in picked)
    with open_db(db_path) as db:
        ingest.insert_upload(
            db, readers.read_upload(path), "slice", ingest.ColumnMapping("text", "label")
        )


def one_job(db_path: Path, seed: int) -> tuple[float, float]:
    """Seconds from the start to the run's worker marking it running, and to its end."""
    config = TrainConfig(epochs=1, max_length_tokens=32, batch_size=16, seed=seed)
    started = time.perf_counter()
    run = worker.start_run(db_path, "slice", config)
    running = None
    while True:
        with open_db(db_path) as db:
            status = runs.get_run(db, run.id).status
        if running is None and status != "queued":
            running = time.perf_counter() - started
        if status not in ("queued", "running"):
            break
        time.sleep(0.05)
    if status != "completed":
        raise SystemExit(f"run {run.id} ended {status}: see its worker.log")
    return running, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times = {side: ([], []) for side in SIDES}
    seed = 0
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "devmode.db"
        store_slice(db_path, Path(folder))
        os.environ["DEVMODE_LAUNCHER"] = "1"
        one_job(db_path, seed)  # starts the launcher (this job is a new process)
        listing = ["--db", str(db_path), "datasets", "list"]
        while launcher.launch(listing, Path(folder) / "warm.log", ROOT, dict(os.environ)) is None:
            time.sleep(0.2)
        for _ in range(args.repeat):
            for side in SIDES:
                os.environ["DEVMODE_LAUNCHER"] = side
                seed += 1
                running, done = one_job(db_path, seed)
                times[side][0].append(running)
                times[side][1].append(done)
        launcher.stop_started(wait=60)
    print(f"CPU: {cpu()}")
    print(f"{'side':<30} start -> running (s)   start -> completed (s)   (median of {args.repeat})")
    for side, label in SIDES.items():
        running, done = (statistics.median(t) for t in times[side])
        print(f"{label:<30} {running:>20.2f}   {done:>22.2f}")
    saved = statistics.median(times["0"][1]) - statistics.median(times["1"][1])
    print(f"the launcher saves {saved:.2f} s a job")


if __name__ == "__main__":
    main()
