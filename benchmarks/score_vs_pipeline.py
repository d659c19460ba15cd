"""devmode's scorer against `transformers.pipeline("text-classification")`: texts/s and agreement.

    $ .venv/bin/python benchmarks/score_vs_pipeline.py                  # the Benzinga headlines
    $ .venv/bin/python benchmarks/score_vs_pipeline.py --repeat 5 --batch-size 256 --device cuda

Both score the same dated Benzinga headlines (../shared/data/dated_headlines) with the same
model on the same device: all-MiniLM-L6-v2 with a 3-class sequence-classification head, saved
as a plain Hugging Face folder (what the pipeline loads). The pipeline gets the batch size a
user would pick (256); devmode batches by a token budget. Prints a side-by-side table with the
share of texts on which both give the same label and the largest probability difference.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HEADLINES = ROOT.parent / "shared" / "data" / "dated_headlines" / "headlines.csv"


def make_classifier(folder: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from devmode.finetune.config import embedded_classifier_dir

    torch.manual_seed(0)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        embedded_classifier_dir(),
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_classifier_dir()).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=1, help="Score the headlines this many times over."
    )
    parser.add_argument("--batch-size", type=int, default=256, help="The pipeline's batch size.")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    from transformers import pipeline

    from devmode.monitor.scoring import load_scorer

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    with open(HEADLINES, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)] * args.repeat
    machine = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{len(texts):,} headlines, all-MiniLM-L6-v2 + 3-class head, on {machine}; torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_classifier(Path(tmp) / "classifier")
        classify = pipeline("text-classification", model=str(folder), device=device, top_k=None)
        classify(texts[:64], batch_size=args.batch_size)  # warm up
        start = time.perf_counter()
        out = classify(texts, batch_size=args.batch_size, truncation=True)
        pipeline_seconds = time.perf_counter() - start
        names = ["negative", "neutral", "positive"]
        pipeline_probs = np.array(
            [[{r["label"]: r["score"] for r in row}[n] for n in names] for row in out]
        )

        scorer = load_scorer(folder, device=device)
        scorer.score(texts[:64])  # warm up
        start = time.perf_counter()
        scores = scorer.score(texts)
        devmode_seconds = time.perf_counter() - start

    same = float((pipeline_probs.argmax(1) == scores.probabilities.argmax(1)).mean())
    gap = float(np.abs(pipeline_probs - scores.probabilities).max())
    print()
    print(f"{'':<28} {'texts/s':>10} {'seconds':>9}")
    print(
        f"{'pipeline (batch ' + str(args.batch_size) + ')':<28} {len(texts) / pipeline_seconds:>10,.0f} {pipeline_seconds:>9.1f}"
    )
    print(f"{'devmode scorer':<28} {len(texts) / devmode_seconds:>10,.0f} {devmode_seconds:>9.1f}")
    print(
        f"speed-up {pipeline_seconds / devmode_seconds:.1f}x; same label on {same:.2%} of texts; "
        f"largest probability difference {gap:.1e}"
    )


if __name__ == "__main__":
    main()
