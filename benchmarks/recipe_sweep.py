"""Which training recipe reaches the accuracy goals: recipes x datasets x seeds, devmode only.

    $ python benchmarks/recipe_sweep.py --datasets allagree,50agree,topic --seeds 42,43,44 \\
          --recipe default: --recipe fgm:adversarial=fgm --recipe long:epochs=10,freeze_embeddings=false

A recipe is a name and TrainConfig fields (``field=value`` separated by commas) on top of
TrainConfig's defaults; the splits are those of ``train_vs_hf.py`` (PhraseBank 80/10/10 within
each label, seed 42; the Twitter topics' official train / valid). Prints, per recipe and data
set, the mean test accuracy / macro-F1 over the seeds, the spread, and seconds per run; meant
for a GPU, where a run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_vs_hf import _config_overrides, load_splits  # noqa: E402


def spread(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def parse_recipe(text: str) -> tuple[str, dict]:
    name, _, fields = text.partition(":")
    return name, _config_overrides([f for f in fields.split(",") if f])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="allagree,50agree,topic")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME:FIELD=VALUE,...")
    parser.add_argument("--json", help="Also write every run's figures to this file.")
    args = parser.parse_args()
    from devmode.finetune.distillation import train_distilled
    from devmode.finetune.training import train
    from devmode.models.config import TrainConfig

    recipes = [parse_recipe(r) for r in args.recipe or ["default:"]]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            data = load_splits(dataset, Path(tmp))
            for name, overrides in recipes:
                for seed in seeds:
                    config = TrainConfig(seed=seed, **overrides)
                    start = time.perf_counter()
                    result = (train_distilled if config.distil_teachers else train)(config, data)
                    row = {
                        "dataset": dataset,
                        "recipe": name,
                        "seed": seed,
                        "accuracy": result.test["accuracy"],
                        "macro_f1": result.test["macro_f1"],
                        "best_epoch": result.best_epoch,
                        "seconds": time.perf_counter() - start,
                        "overrides": overrides,
                    }
                    rows.append(row)
                    print(
                        f"  {dataset} {name} seed {seed}: {row['accuracy']:.3f} / "
                        f"{row['macro_f1']:.3f} (best epoch {row['best_epoch']}, "
                        f"{row['seconds']:.1f} s)",
                        flush=True,
                    )
    print()
    print(
        f"{'dataset':<9} {'recipe':<24} {'seeds':>5} {'accuracy':>13} {'macro-F1':>13} {'s/run':>6}"
    )
    for dataset in args.datasets.split(","):
        for name, _ in recipes:
            runs = [r for r in rows if r["dataset"] == dataset and r["recipe"] == name]
            acc = [r["accuracy"] for r in runs]
            f1 = [r["macro_f1"] for r in runs]
            print(
                f"{dataset:<9} {name:<24} {len(runs):>5} "
                f"{statistics.mean(acc):>6.3f}±{spread(acc):.3f} "
                f"{statistics.mean(f1):>6.3f}±{spread(f1):.3f} "
                f"{statistics.mean(r['seconds'] for r in runs):>6.1f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
