"""devmode's training loop against plain `transformers.Trainer`: speed and test scores.

    $ .venv/bin/python benchmarks/train_vs_hf.py                                   # everything
    $ .venv/bin/python benchmarks/train_vs_hf.py --datasets allagree --seeds 42 --epochs 2

Both sides fine-tune the embedded all-MiniLM-L6-v2 on the same rows, split, epochs, batch size,
learning rate and device, and evaluate after every epoch. The Trainer side is the code a user
would write from the Hugging Face tutorial: `AutoModelForSequenceClassification`, `datasets.map`
with truncation, `DataCollatorWithPadding`, per-epoch evaluation and checkpointing, bf16 on CUDA.

Splits: Financial PhraseBank 50-agree and all-agree are split 80/10/10 within each label with
seed 42 (devmode's stored split); the Twitter topic set uses its official train / valid files
(valid is the test set; 10% of train, stratified, is held out for per-epoch validation).

Speed is training samples (rows x epochs) per second of wall time over the epochs, per-epoch
evaluation and checkpointing included; model loading, tokenization and the final test
evaluation excluded on both sides (what `trainer.train()` times). Prints a side-by-side table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "allagree": DATA / "financial_phrasebank" / "sentences_allagree.csv",
    "50agree": DATA / "financial_phrasebank" / "sentences_50agree.csv",
    "topic": DATA / "twitter_financial_news_topic",
}


def load_splits(name: str, tmp: Path):
    """(train, validation, test) lists of (text, label), from devmode's own stored split."""
    from devmode import ingest, readers
    from devmode.db import open_db
    from devmode.training import TrainData

    with open_db(tmp / f"{name}.db") as db:
        if name == "topic":
            upload = readers.read_upload(DATASETS[name] / "train.csv")
            ingest.insert_upload(
                db,
                upload,
                "t",
                ingest.ColumnMapping("text", "label"),
                ingest.SplitSpec(0.9, 0.1, 0.0),
            )
            rows = list(ingest.iter_rows(db, "t"))
            test = [
                {**r, ingest.SPLIT_COLUMN: "test"} for r in _csv_rows(DATASETS[name] / "valid.csv")
            ]
            rows += test
        else:
            upload = readers.read_upload(DATASETS[name])
            ingest.insert_upload(db, upload, "t", ingest.ColumnMapping("text", "label"))
            rows = list(ingest.iter_rows(db, "t"))
    return TrainData.from_rows(rows, split_column=ingest.SPLIT_COLUMN)


def _csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_devmode(data, args, seed, tmp: Path) -> dict:
    from devmode.config import TrainConfig
    from devmode.training import train

    config = TrainConfig(
        dataset="bench",
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=seed,
        early_stopping_patience=0,
        device=args.device,
        log_every_steps=50,
        **args.devmode_options,
    )
    result = train(config, data, checkpoint_dir=tmp / f"devmode-{seed}")
    # the epochs' wall time, evaluation and checkpoints included: what trainer.train() covers
    seconds = result.loop_seconds
    return {
        "samples_per_s": len(data.train) * result.epochs_run / seconds,
        "accuracy": result.test["accuracy"],
        "macro_f1": result.test["macro_f1"],
        "seconds": seconds,
    }


def run_trainer(data, args, seed, tmp: Path) -> dict:
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from devmode.config import embedded_classifier_dir

    labels = data.labels
    index = {label: i for i, label in enumerate(labels)}
    source = str(embedded_classifier_dir())
    tokenizer = AutoTokenizer.from_pretrained(source)

    def to_dataset(examples):
        ds = Dataset.from_dict(
            {"text": [t for t, _ in examples], "label": [index[lab] for _, lab in examples]}
        )
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)

    train_ds, validation_ds, test_ds = (
        to_dataset(x) for x in (data.train, data.validation, data.test)
    )
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels))
    cuda = args.device != "cpu" and torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(tmp / f"trainer-{seed}"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=256,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_steps=int(0.1 * args.epochs * -(-len(data.train) // args.batch_size)),
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        logging_steps=50,
        seed=seed,
        bf16=cuda,
        use_cpu=not cuda,
        report_to="none",
        disable_tqdm=True,
    )

    def metrics(prediction):
        predicted = prediction.predictions.argmax(-1)
        return {
            "accuracy": accuracy_score(prediction.label_ids, predicted),
            "macro_f1": f1_score(prediction.label_ids, predicted, average="macro"),
        }

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=validation_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    # no group_by_length here, so predict() keeps the input order (transformers 5 reorders it otherwise)
    scores = trainer.predict(test_ds).metrics
    return {
        "samples_per_s": len(data.train) * args.epochs / seconds,
        "accuracy": scores["test_accuracy"],
        "macro_f1": scores["test_macro_f1"],
        "seconds": seconds,
    }


def _config_overrides(pairs: list[str]) -> dict:
    """``["epochs=8", "adversarial=fgm"]`` as TrainConfig keyword arguments of the right types."""
    import dataclasses

    from devmode.config import TrainConfig

    types = {
        f.name: type(f.default) for f in dataclasses.fields(TrainConfig) if f.name != "dataset"
    }
    overrides = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types:
            raise SystemExit(f"--devmode-option {pair!r}: {name!r} is not a TrainConfig field.")
        kind = types[name]
        overrides[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return overrides


def _mean_figures(results: list[dict], dataset: str, side: str) -> dict:
    """Mean over seeds of one side's figures; NaN for a side that was not run."""
    rows = [r for r in results if r["dataset"] == dataset and r["side"] == side]
    keys = ("samples_per_s", "accuracy", "macro_f1")
    if not rows:
        return dict.fromkeys(keys, float("nan"))
    return {k: statistics.mean(r[k] for r in rows) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="allagree,50agree,topic")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--sides", default="trainer,devmode", help="Which sides to run, e.g. devmode alone."
    )
    parser.add_argument(
        "--devmode-option",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="A TrainConfig field for the devmode side only, e.g. adversarial=fgm (repeatable).",
    )
    parser.add_argument("--json", help="Also write the raw results to this file.")
    args = parser.parse_args()
    args.devmode_options = _config_overrides(args.devmode_option)
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    machine = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(
        f"all-MiniLM-L6-v2, {args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate:g}, on {machine}; "
        f"torch {torch.__version__}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.datasets.split(","):
            data = load_splits(name, tmp)
            for seed in (int(s) for s in args.seeds.split(",")):
                for side, fn in (("trainer", run_trainer), ("devmode", run_devmode)):
                    if side not in args.sides.split(","):
                        continue
                    figures = fn(data, args, seed, tmp)
                    results.append({"dataset": name, "seed": seed, "side": side, **figures})
                    print(
                        f"  {name} seed {seed} {side}: {figures['samples_per_s']:.0f} samples/s, "
                        f"accuracy {figures['accuracy']:.3f}, macro-F1 {figures['macro_f1']:.3f}",
                        flush=True,
                    )
                    shutil.rmtree(tmp / f"{side}-{seed}", ignore_errors=True)
    print()
    print(
        f"{'dataset':<10} {'seeds':>5} {'Trainer samples/s':>18} {'devmode samples/s':>18} "
        f"{'speed-up':>9} {'Trainer acc / F1':>17} {'devmode acc / F1':>17}"
    )
    for name in args.datasets.split(","):
        mean = {side: _mean_figures(results, name, side) for side in ("trainer", "devmode")}
        seeds = len({r["seed"] for r in results if r["dataset"] == name})
        print(
            f"{name:<10} {seeds:>5} {mean['trainer']['samples_per_s']:>18.0f} "
            f"{mean['devmode']['samples_per_s']:>18.0f} "
            f"{mean['devmode']['samples_per_s'] / mean['trainer']['samples_per_s']:>8.1f}x "
            f"{mean['trainer']['accuracy']:>8.3f} / {mean['trainer']['macro_f1']:.3f} "
            f"{mean['devmode']['accuracy']:>8.3f} / {mean['devmode']['macro_f1']:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
