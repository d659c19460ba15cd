"""devmode's training loop against plain `transformers.Trainer`: speed and test scores.

    $ .venv/bin/python benchmarks/train_vs_hf.py                                   # everything
    $ .venv/bin/python benchmarks/train_vs_hf.py --datasets allagree --seeds 42 --epochs 2

Both sides fine-tune the embedded all-MiniLM-L6-v2 on the same rows, split, epochs, batch size,
learning rate and device, and evaluate after every epoch. The Trainer side is the code a user
would write from the Hugging Face tutorial: `AutoModelForSequenceClassification`, `datasets.map`
with truncation, `DataCollatorWithPadding`, per-epoch evaluation and checkpointing, bf16 on CUDA;
and the same Trainer as a careful user sets it, with length-grouped batches
(`train_sampling_strategy="group_by_length"`, one argument). devmode's speed-up is given
against the faster of the two.

Splits: Financial PhraseBank 50-agree and all-agree are split 80/10/10 within each label with
seed 42 (devmode's stored split); the Twitter topic set uses its official train / valid files
(valid is the test set; 10% of train, stratified, is held out for per-epoch validation).

Speed is training samples (rows x epochs) per second of wall time over the epochs, per-epoch
evaluation and checkpointing included; model loading, tokenization and the final test
evaluation excluded on both sides (what `trainer.train()` times). Prints a side-by-side table.

On CUDA it also prints the model FLOP rate (6 x the non-embedding parameters x the real, unpadded
training tokens per second; x2 with FGM, which does every pass twice; attention scores left out,
small at these lengths) as a share of the bf16 matrix-product rate measured on the same GPU
(an 8192^3 product of random matrices), so "how much of the GPU" is a measured fraction.

    $ python benchmarks/train_vs_hf.py --sides trainer --json trainer.json   # two separate runs,
    $ python benchmarks/train_vs_hf.py --sides devmode --json devmode.json   # then one table:
    $ python benchmarks/train_vs_hf.py --table trainer.json,devmode.json
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
    "allagree": Path("financial_phrasebank") / "sentences_allagree.csv",
    "50agree": Path("financial_phrasebank") / "sentences_50agree.csv",
    "topic": Path("twitter_financial_news_topic"),
}


def load_splits(name: str, tmp: Path, data_dir: Path = DATA, rows_per_label: int = 0):
    """(train, validation, test) lists of (text, label), from devmode's own stored split; with
    ``rows_per_label``, only the first that many rows of each label in each split."""
    from devmode.data import ingest, readers, splits
    from devmode.data.examples import TrainData
    from devmode.db import open_db

    source = data_dir / DATASETS[name]
    with open_db(tmp / f"{name}.db") as db:
        if name == "topic":
            upload = readers.read_upload(source / "train.csv")
            ingest.insert_upload(
                db,
                upload,
                "t",
                ingest.ColumnMapping("text", "label"),
                splits.SplitSpec(0.9, 0.1, 0.0),
            )
            rows = list(ingest.iter_rows(db, "t"))
            test = [{**r, splits.SPLIT_COLUMN: "test"} for r in _csv_rows(source / "valid.csv")]
            rows += test
        else:
            upload = readers.read_upload(source)
            ingest.insert_upload(db, upload, "t", ingest.ColumnMapping("text", "label"))
            rows = list(ingest.iter_rows(db, "t"))
    if rows_per_label:
        seen: dict[tuple, int] = {}
        kept = []
        for row in rows:
            key = (row[splits.SPLIT_COLUMN], row["label"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= rows_per_label:
                kept.append(row)
        rows = kept
    return TrainData.from_rows(rows, split_column=splits.SPLIT_COLUMN)


def _csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_devmode(data, args, seed, tmp: Path, side: str = "devmode", **step_options) -> dict:
    from devmode.finetune.training import train
    from devmode.models.config import TrainConfig

    options = {**args.devmode_options, **step_options}
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=seed,
        early_stopping_patience=0,
        device=args.device,
        base_model=args.base_model,
        log_every_steps=50,
        **options,
    )
    result = train(config, data, checkpoint_dir=tmp / f"{side}-{seed}")
    # the epochs' wall time, evaluation and checkpoints included: what trainer.train() covers
    seconds = result.loop_seconds
    return {
        "samples_per_s": len(data.train) * result.epochs_run / seconds,
        "accuracy": result.test["accuracy"],
        "macro_f1": result.test["macro_f1"],
        "seconds": seconds,
        "passes_per_step": 2 if config.adversarial == "fgm" else 1,
        "step_graphs": result.step_graphs,
        "notes": result.notes,
    }


def run_devmode_graphs(data, args, seed, tmp: Path) -> dict:
    """devmode's step replayed as CUDA graphs it captures itself (``--cuda-graphs``)."""
    return run_devmode(data, args, seed, tmp, "devmode-graphs", cuda_graphs=True)


def run_devmode_compiled(data, args, seed, tmp: Path) -> dict:
    """The same step through ``torch.compile`` (reduce-overhead on CUDA), the library's way."""
    import torch._dynamo

    torch._dynamo.reset()
    return run_devmode(data, args, seed, tmp, "devmode-compile", compile_step=True)


def run_trainer_grouped(data, args, seed, tmp: Path) -> dict:
    """The Trainer as a careful user sets it: the same, with length-grouped batches."""
    return run_trainer(data, args, seed, tmp, grouped=True)


def _sampling(grouped: bool) -> dict:
    """Length-grouped batches or random ones, in this transformers' words: 5.x says
    ``train_sampling_strategy``; releases before it said ``group_by_length=True``."""
    import dataclasses

    from transformers import TrainingArguments

    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


def run_trainer(data, args, seed, tmp: Path, *, grouped: bool = False) -> dict:
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from devmode.models.base_models import resolve_base_model

    labels = data.labels
    index = {label: i for i, label in enumerate(labels)}
    source = resolve_base_model(args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(source)

    def to_dataset(examples):
        ds = Dataset.from_dict(
            {"text": [t for t, _ in examples], "label": [index[lab] for _, lab in examples]}
        )
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)

    train_ds, validation_ds, test_ds = (
        to_dataset(x) for x in (data.train, data.validation, data.test)
    )
    # fp32 master weights whatever the file holds (transformers 5 keeps an fp16 file's dtype);
    # bf16 comes from the Trainer's autocast, as devmode's does
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), dtype=torch.float32
    )
    cuda = args.device != "cpu" and torch.cuda.is_available()
    training_args = TrainingArguments(
        output_dir=str(tmp / f"trainer{'-grouped' * grouped}-{seed}"),
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
        **_sampling(grouped),
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
    # transformers 5 also groups evaluation batches by length under group_by_length, so
    # predict() returns the test rows reordered (with their labels reordered alike): test in
    # input order, and check that the labels came back in it
    for name, value in _sampling(False).items():
        setattr(trainer.args, name, value)
    test = trainer.predict(test_ds)
    assert list(test.label_ids) == list(test_ds["label"]), "predict() reordered the test rows"
    scores = test.metrics
    return {
        "samples_per_s": len(data.train) * args.epochs / seconds,
        "accuracy": scores["test_accuracy"],
        "macro_f1": scores["test_macro_f1"],
        "seconds": seconds,
        "passes_per_step": 1,
    }


def _config_overrides(pairs: list[str]) -> dict:
    """``["epochs=8", "adversarial=fgm"]`` as TrainConfig keyword arguments of the right types."""
    import dataclasses

    from devmode.models.config import TrainConfig

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
    keys = ("samples_per_s", "accuracy", "macro_f1", "model_tflops")
    if not rows:
        return dict.fromkeys(keys, float("nan"))
    return {k: statistics.mean(r.get(k, float("nan")) for r in rows) for k in keys}


def flops_per_token(base_model: str) -> float:
    """6 x the parameters outside the embedding tables: a forward and backward pass's matrix
    products per token (the word, position and type embeddings are lookups, not products)."""
    from transformers import AutoModel

    from devmode.models.base_models import resolve_base_model

    model = AutoModel.from_pretrained(resolve_base_model(base_model))
    return 6.0 * sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith("embeddings.")
    )


def mean_tokens(data, base_model: str, max_length: int = 128) -> float:
    """Real (unpadded) tokens per training text, special tokens included."""
    from transformers import AutoTokenizer

    from devmode.models.base_models import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(base_model))
    ids = tokenizer([t for t, _ in data.train], truncation=True, max_length=max_length)["input_ids"]
    return statistics.mean(len(x) for x in ids)


def measured_bf16_peak() -> float:
    """TFLOP/s of an 8192^3 bf16 matrix product on random data (median of 10, after 3)."""
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    return 2 * n**3 / statistics.median(times) / 1e12


SIDES = {"trainer": "Trainer, tutorial", "trainer-grouped": "Trainer, length-grouped"}
DEVMODE_SIDES = {
    "devmode": "devmode, eager",
    "devmode-graphs": "devmode --cuda-graphs",
    "devmode-compile": "devmode torch.compile",
}
LABELS = {**SIDES, **DEVMODE_SIDES}
RUNNERS = {
    "trainer": run_trainer,
    "trainer-grouped": run_trainer_grouped,
    "devmode": run_devmode,
    "devmode-graphs": run_devmode_graphs,
    "devmode-compile": run_devmode_compiled,
}


def print_table(results: list[dict], peak_tflops: float | None) -> None:
    """A row per dataset and side; devmode's speed-up is against the faster Trainer."""
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    print(
        f"{'dataset':<10} {'side':<24} {'seeds':>5} {'samples/s':>10} {'acc / F1':>15}"
        + (f" {'% of bf16 peak':>15}" if peak_tflops else "")
    )
    for name in datasets:
        seeds = len({r["seed"] for r in results if r["dataset"] == name})
        mean = {side: _mean_figures(results, name, side) for side in RUNNERS}
        for side, figures in mean.items():
            if figures["samples_per_s"] != figures["samples_per_s"]:  # NaN: not run
                continue
            line = (
                f"{name:<10} {LABELS[side]:<24} {seeds:>5} "
                f"{figures['samples_per_s']:>10.0f} "
                f"{figures['accuracy']:>7.3f} / {figures['macro_f1']:.3f}"
            )
            if peak_tflops:
                line += f" {100 * figures['model_tflops'] / peak_tflops:>14.2f}%"
            print(line)
        trainers = [mean[s]["samples_per_s"] for s in SIDES if mean[s]["samples_per_s"] > 0]
        for side, label in DEVMODE_SIDES.items():
            if trainers and mean[side]["samples_per_s"] > 0:
                ratio = mean[side]["samples_per_s"] / max(trainers)
                print(f"{name:<10} {label} / the faster Trainer: {ratio:.2f}x")
    if peak_tflops:
        print(f"bf16 peak measured on this GPU: {peak_tflops:.0f} TFLOP/s (8192^3 product)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="allagree,50agree,topic")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--sides",
        default="trainer,trainer-grouped,devmode",
        help="Which sides to run: trainer (the tutorial's), trainer-grouped (with "
        "train_sampling_strategy='group_by_length'), devmode (eager steps), devmode-graphs "
        "(--cuda-graphs), devmode-compile (torch.compile of the step).",
    )
    parser.add_argument(
        "--devmode-option",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="A TrainConfig field for the devmode side only, e.g. adversarial=fgm (repeatable).",
    )
    parser.add_argument(
        "--base-model",
        default="embedded",
        help="Both sides fine-tune this model folder (default: the embedded all-MiniLM-L6-v2).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="The folder holding financial_phrasebank/ and twitter_financial_news_topic/.",
    )
    parser.add_argument(
        "--rows-per-label",
        type=int,
        default=0,
        help="Keep only the first N rows of each label in each split (a quick dry run).",
    )
    parser.add_argument("--json", help="Also write the raw results to this file.")
    parser.add_argument(
        "--table", help="Print the table from saved --json files (comma-separated) and stop."
    )
    args = parser.parse_args()
    if args.table:
        saved = [json.loads(Path(f).read_text()) for f in args.table.split(",")]
        results = [r for part in saved for r in part["results"]]
        print_table(results, max((part.get("peak_tflops") or 0) for part in saved) or None)
        return
    args.devmode_options = _config_overrides(args.devmode_option)
    unknown = set(args.sides.split(",")) - set(RUNNERS)
    if unknown:
        raise SystemExit(f"--sides: unknown {sorted(unknown)}; expected some of {list(RUNNERS)}.")
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
    peak = measured_bf16_peak() if device == "cuda" else None
    if peak:
        print(f"bf16 matrix-product peak measured here: {peak:.0f} TFLOP/s")
    per_token = flops_per_token(args.base_model)
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.datasets.split(","):
            data = load_splits(name, tmp, args.data, args.rows_per_label)
            tokens = mean_tokens(data, args.base_model)
            for seed in (int(s) for s in args.seeds.split(",")):
                for side in args.sides.split(","):
                    figures = RUNNERS[side](data, args, seed, tmp)
                    figures["model_tflops"] = (
                        figures["samples_per_s"] * tokens * per_token * figures["passes_per_step"]
                    ) / 1e12
                    results.append({"dataset": name, "seed": seed, "side": side, **figures})
                    extra = (
                        f", {figures['step_graphs']} step graphs {' '.join(figures['notes'])}"
                        if side in DEVMODE_SIDES
                        else ""
                    )
                    print(
                        f"  {name} seed {seed} {side}: {figures['samples_per_s']:.0f} samples/s, "
                        f"{figures['model_tflops']:.2f} model TFLOP/s, "
                        f"accuracy {figures['accuracy']:.3f}, macro-F1 {figures['macro_f1']:.3f}"
                        + extra,
                        flush=True,
                    )
                    shutil.rmtree(tmp / f"{side}-{seed}", ignore_errors=True)
                    if args.json:  # after every side: a run cut short keeps what it measured
                        record = {"machine": machine, "torch": torch.__version__}
                        record |= {"peak_tflops": peak, "results": results}
                        Path(args.json).write_text(json.dumps(record, indent=2))
    print()
    print_table(results, peak)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
