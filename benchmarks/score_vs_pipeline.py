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
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
HEADLINES = Path("dated_headlines") / "headlines.csv"
PHRASEBANK = Path("financial_phrasebank") / "sentences_allagree.csv"
NAMES = ["negative", "neutral", "positive"]  # the head's classes, in its order


def make_classifier(
    folder: Path, base_model: str = "embedded", data: Path = DATA, rows_wanted: int = 0
) -> Path:
    """all-MiniLM-L6-v2 with a 3-class head fitted on Financial PhraseBank's pooled vectors
    (on about ``rows_wanted`` of them, spread over the file, when it is set)."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from devmode.models.base_models import resolve_base_model

    torch.manual_seed(0)
    source = resolve_base_model(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        dtype=torch.float32,
        num_labels=3,
        id2label=dict(enumerate(NAMES)),
        label2id={n: i for i, n in enumerate(NAMES)},
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    with open(data / PHRASEBANK, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows_wanted:
        rows = rows[:: max(1, len(rows) // rows_wanted)]
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
        np.concatenate(vectors), [NAMES.index(r["label"]) for r in rows]
    )
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(fitted.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(fitted.intercept_, dtype=torch.float32))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def time_pipeline(folder: Path, texts: list[str], device: str, dtype, batch_size: int):
    """Seconds for ``transformers.pipeline`` to classify ``texts``, and its probabilities."""
    from transformers import pipeline

    classify = pipeline(
        "text-classification", model=str(folder), device=device, dtype=dtype, top_k=None
    )
    classify(texts[:64], batch_size=batch_size)  # warm up
    start = time.perf_counter()
    out = classify(texts, batch_size=batch_size, truncation=True)
    seconds = time.perf_counter() - start
    return seconds, np.array(
        [[{r["label"]: r["score"] for r in row}[n] for n in NAMES] for row in out]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=1, help="Score the headlines this many times over."
    )
    parser.add_argument("--batch-size", type=int, default=256, help="The pipeline's batch size.")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--base-model", default="embedded", help="The encoder under the head (a model folder)."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="The folder holding dated_headlines/ and financial_phrasebank/.",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="Score only the first N headlines, and fit the head on about N sentences (a dry run).",
    )
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    from devmode.models.scorers import load_scorer

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    with open(args.data / HEADLINES, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    texts = texts[: args.limit or None] * args.repeat
    machine = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{len(texts):,} headlines, all-MiniLM-L6-v2 + 3-class head, on {machine}; torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_classifier(Path(tmp) / "classifier", args.base_model, args.data, args.limit)
        # on a GPU a careful user would also ask the pipeline for bf16: both are measured, and
        # devmode is compared with the faster; labels are compared with the fp32 pipeline's
        dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
        rows = []
        for dtype in dtypes:
            seconds, probabilities = time_pipeline(folder, texts, device, dtype, args.batch_size)
            name = f"pipeline (batch {args.batch_size}{', bf16' * (dtype == torch.bfloat16)})"
            rows.append((name, seconds, probabilities))
        pipeline_seconds = min(seconds for _, seconds, _ in rows)
        pipeline_probs = rows[0][2]

        scorer = load_scorer(folder, device=device, precision="fp32")
        scorer.score(texts[:64])  # warm up
        start = time.perf_counter()
        scores = scorer.score(texts)
        devmode_seconds = time.perf_counter() - start
        rows.append((f"devmode {scorer.precision}", devmode_seconds, scores.probabilities))
        if device == "cpu":
            from devmode.models import quantized

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
        f"{'':<28} {'texts/s':>9} {'seconds':>8} {'vs pipeline':>12} {'same label as pipeline':>23}"
    )
    figures = []
    for name, seconds, probs in rows:
        same = float((probs.argmax(1) == reference).mean())
        figures.append(
            {
                "side": name,
                "texts_per_s": len(texts) / seconds,
                "seconds": seconds,
                "vs_pipeline": pipeline_seconds / seconds,
                "same_label": same,
            }
        )
        print(
            f"{name:<28} {len(texts) / seconds:>9,.0f} {seconds:>8.1f} "
            f"{pipeline_seconds / seconds:>11.1f}x {same:>22.2%}"
        )
    gap = float(np.abs(pipeline_probs - scores.probabilities).max())
    print(f"devmode {scorer.precision}: largest probability difference from the pipeline {gap:.1e}")
    if args.json:
        record = {"machine": machine, "texts": len(texts), "torch": torch.__version__}
        Path(args.json).write_text(json.dumps({**record, "results": figures}, indent=2))
    if device == "cpu":
        print(
            f"int8 check: same label as fp32 on {card['agreement']:.2%} of {card['check_texts']:,} "
            f"texts (needs {quantized.MIN_AGREEMENT:.0%}), built and checked in {build_seconds:.1f} s; "
            f"on all headlines {float((int8_scores.probabilities.argmax(1) == scores.probabilities.argmax(1)).mean()):.2%}"
        )


if __name__ == "__main__":
    main()
