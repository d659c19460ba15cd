"""devmode's scorer against `transformers.pipeline("text-classification")`: texts/s and agreement.

    $ .venv/bin/python benchmarks/score_vs_pipeline.py                  # the Benzinga headlines
    $ .venv/bin/python benchmarks/score_vs_pipeline.py --repeat 5 --batch-size 256 --device cuda

All score the same dated Benzinga headlines (../shared/data/dated_headlines) with the same
model on the same device: all-MiniLM-L6-v2 with a 3-class sequence-classification head, saved
as a plain Hugging Face folder (what the pipeline loads). The head is fitted first (logistic
regression on the pooled sentence vectors of Financial PhraseBank, read from ../shared, not
bundled), so that labels are confident as a trained model's are: with a random head most
texts sit near a tie, and any rounding flips them. The pipeline gets the batch size a careful
user would pick (256, sorted by nothing: it has no length grouping); devmode batches
length-sorted texts by a token budget, in fp32 torch and, on a CPU, in int8 on ONNX Runtime
(quantized.py), which is used only when it gives the fp32 label on at least 99% of a check set.

Expected before measuring (2 cores): fp32 about 3.5x the pipeline, as measured before; int8
about 2.3x fp32 (what a first ONNX Runtime trial showed), so 7-8x the pipeline, with the same
label as fp32 on more than 99% of headlines.
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
PHRASEBANK = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.csv"


def make_classifier(folder: Path) -> Path:
    """all-MiniLM-L6-v2 with a 3-class head fitted on Financial PhraseBank's pooled vectors."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from devmode.finetune.config import embedded_classifier_dir

    torch.manual_seed(0)
    names = ["negative", "neutral", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        embedded_classifier_dir(),
        num_labels=3,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(embedded_classifier_dir())
    with open(PHRASEBANK, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(rows), 128):
            batch = tokenizer(
                [r["text"] for r in rows[start : start + 128]],
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            vectors.append(model.bert(**batch).pooler_output.numpy())
    fitted = LogisticRegression(C=10.0, max_iter=2000).fit(
        np.concatenate(vectors), [names.index(r["label"]) for r in rows]
    )
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(fitted.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(fitted.intercept_, dtype=torch.float32))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
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

        scorer = load_scorer(folder, device=device, precision="fp32")
        scorer.score(texts[:64])  # warm up
        start = time.perf_counter()
        scores = scorer.score(texts)
        devmode_seconds = time.perf_counter() - start
        rows = [
            ("pipeline (batch " + str(args.batch_size) + ")", pipeline_seconds, pipeline_probs),
            ("devmode fp32", devmode_seconds, scores.probabilities),
        ]
        if device == "cpu":
            from devmode.monitor import quantized

            start = time.perf_counter()
            card = quantized.build_int8(folder, texts[:: max(1, len(texts) // 2000)])
            build_seconds = time.perf_counter() - start
            small = load_scorer(folder, device=device)  # int8 only if its check agreed
            small.score(texts[:64])
            start = time.perf_counter()
            int8_scores = small.score(texts)
            rows.append(
                (
                    f"devmode {small.precision} (auto)",
                    time.perf_counter() - start,
                    int8_scores.probabilities,
                )
            )

    reference = pipeline_probs.argmax(1)
    print()
    print(
        f"{'':<26} {'texts/s':>9} {'seconds':>8} {'vs pipeline':>12} {'same label as pipeline':>23}"
    )
    for name, seconds, probs in rows:
        same = float((probs.argmax(1) == reference).mean())
        print(
            f"{name:<26} {len(texts) / seconds:>9,.0f} {seconds:>8.1f} "
            f"{pipeline_seconds / seconds:>11.1f}x {same:>22.2%}"
        )
    gap = float(np.abs(pipeline_probs - scores.probabilities).max())
    print(f"fp32: largest probability difference from the pipeline {gap:.1e}")
    if device == "cpu":
        print(
            f"int8 check: same label as fp32 on {card['agreement']:.2%} of {card['check_texts']:,} "
            f"texts (needs {quantized.MIN_AGREEMENT:.0%}), built and checked in {build_seconds:.1f} s; "
            f"on all headlines {float((int8_scores.probabilities.argmax(1) == scores.probabilities.argmax(1)).mean()):.2%}"
        )


if __name__ == "__main__":
    main()
