"""The Monitor's health estimate against the truth: how close the mean calibrated top-class
probability of a window of unlabelled texts comes to the model's real accuracy there.

    $ .venv/bin/python benchmarks/live_health.py                       # runs the 5-fold evaluation
    $ .venv/bin/python benchmarks/live_health.py --db pb.db --evaluation 1   # reuses one

- **In-domain:** a 5-fold evaluation of the default recipe on PhraseBank all-agree; each fold's
  model and the fold it never saw (about 452 rows) as one window: its out-of-fold predictions
  give the estimate (mean top-class probability at the fold's temperature) and the accuracy.
  Goal: a mean absolute gap over the 5 folds of at most 3 points.
- **A shift:** the 50-agree sentences that are not in all-agree (the ones annotators disagreed
  on: harder and ambiguous), in windows of 500 rows in file order, scored by each fold's model;
  the estimate against the accuracy on the 50-agree majority label, averaged over the 5 models.
  The data is read from ../shared, never bundled.

Expected before measuring: in-domain the gap is the calibration error in the large, a point or
two after temperature scaling. Under the shift the model will be over-confident: the texts are
ambiguous by construction (annotators split), the labels noisier, and a temperature fitted on
clean all-agree rows does not know that, so the estimate should fall (the signal the Monitor
needs) but stay above the true accuracy, perhaps by 10 points or more.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data" / "financial_phrasebank"

from machine import cpu  # noqa: E402

WINDOW = 500


def shifted_rows() -> list[tuple[str, str]]:
    """(text, label) of the 50-agree file that are not in the all-agree file, in file order."""

    def rows(name: str) -> list[tuple[str, str]]:
        with open(DATA / name, newline="", encoding="utf-8") as f:
            return [(r["text"], r["label"]) for r in csv.DictReader(f)]

    seen = {text for text, _ in rows("sentences_allagree.csv")}
    return [(t, label) for t, label in rows("sentences_50agree.csv") if t not in seen]


def evaluate(db_path: str, folds: int) -> int:
    """Store all-agree and run a k-fold evaluation of the default recipe; its id."""
    from devmode.data import ingest, readers
    from devmode.db import open_db
    from devmode.finetune import evaluations
    from devmode.models.config import TrainConfig

    with open_db(db_path) as db:
        ingest.insert_upload(
            db,
            readers.read_upload(DATA / "sentences_allagree.csv"),
            "phrasebank",
            ingest.ColumnMapping("text", "label"),
        )
        found = evaluations.create_evaluation(
            db, "phrasebank", TrainConfig(), folds=folds, fold_seed=42
        )
    evaluations.execute_evaluation(db_path, found.id, echo=print)
    return found.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="A database holding a completed evaluation (--evaluation).")
    parser.add_argument("--evaluation", type=int, help="Its id; without it one is run.")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    from devmode.db import open_db
    from devmode.finetune import evaluations
    from devmode.models.scorers import load_scorer

    folder = tempfile.mkdtemp(prefix="devmode-live-health-")
    db_path = args.db or str(Path(folder) / "devmode.db")
    evaluation_id = args.evaluation or evaluate(db_path, args.folds)
    with open_db(db_path) as db:
        evaluation = evaluations.get_evaluation(db, evaluation_id)
        predictions = evaluations.out_of_fold(db, evaluation_id)
    assert evaluation.is_completed, evaluation.status

    print(f"\nMachine: {cpu()}; {dt.date.today()}")
    print(
        f"Evaluation {evaluation.id}: {evaluation.folds} folds of {evaluation.dataset} "
        f"({evaluation.rows:,} rows), epochs {evaluation.config.epochs}"
    )
    print("\nIn-domain: each fold's model on the fold it never saw")
    print(
        f"{'fold':>4} {'rows':>5} {'temperature':>11} {'estimated':>9} {'accuracy':>8} {'gap':>6}"
    )
    gaps = []
    for record in evaluation.fold_results:
        held = [p for p in predictions if p["fold"] == record["fold"]]
        estimate = float(np.mean([max(p["probabilities"]) for p in held]))
        accuracy = float(np.mean([p["predicted"] == p["label"] for p in held]))
        gaps.append(abs(estimate - accuracy))
        print(
            f"{record['fold'] + 1:>4} {len(held):>5} {record['temperature']:>11.2f} "
            f"{estimate:>9.3f} {accuracy:>8.3f} {estimate - accuracy:>+6.3f}"
        )
    print(f"mean absolute gap: {100 * statistics.mean(gaps):.1f} points (goal: at most 3)")

    rows = shifted_rows()
    texts = [t for t, _ in rows]
    estimates, accuracies = [], []
    for record in evaluation.fold_results:
        scorer = load_scorer(record["model_dir"], precision="fp32")
        scores = scorer.score(texts)
        estimates.append(scores.probabilities.max(1))
        accuracies.append(np.array([p == t for p, (_, t) in zip(scores.labels, rows, strict=True)]))
    print(
        f"\nA shift: the {len(rows):,} 50-agree rows not in all-agree, {WINDOW}-row windows, "
        f"mean of the {len(evaluation.fold_results)} fold models"
    )
    print(f"{'window':>6} {'rows':>5} {'estimated':>9} {'accuracy':>8} {'gap':>6}")
    for start in range(0, len(rows), WINDOW):
        window = slice(start, start + WINDOW)
        estimate = float(np.mean([e[window].mean() for e in estimates]))
        accuracy = float(np.mean([a[window].mean() for a in accuracies]))
        print(
            f"{start // WINDOW + 1:>6} {len(rows[window]):>5} {estimate:>9.3f} {accuracy:>8.3f} "
            f"{estimate - accuracy:>+6.3f}"
        )
    estimate = float(np.mean([e.mean() for e in estimates]))
    accuracy = float(np.mean([a.mean() for a in accuracies]))
    print(
        f"{'all':>6} {len(rows):>5} {estimate:>9.3f} {accuracy:>8.3f} {estimate - accuracy:>+6.3f}"
    )


if __name__ == "__main__":
    main()
