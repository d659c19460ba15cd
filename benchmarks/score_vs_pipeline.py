"""devmode's scorer against `transformers.pipeline("text-classification")`: texts/s and agreement.

    $ .venv/bin/python benchmarks/score_vs_pipeline.py --model FOLDER    # a devmode classifier
    $ .venv/bin/python benchmarks/score_vs_pipeline.py                   # trains one first (1 epoch)
    $ .venv/bin/python benchmarks/score_vs_pipeline.py --limit 0         # every headline

All sides score the same dated Benzinga headlines (../shared/data/dated_headlines; 3,000 spread
over the file by default) with the same fine-tuned model on the CPU: a devmode run (all-MiniLM-
L6-v2 fine-tuned on Financial PhraseBank, read from ../shared, never bundled). The pipeline
loads it as `models export --format hf` writes it (devmode's pooling and head as a Hugging
Face custom model). The pipeline gets its best batch size from a sweep (8 to 256), as a careful
user would pick it; the ratio to batch 256 (where unsorted padding costs it most) is printed
beside. devmode batches length-sorted texts by a token budget: fp32 torch, and `auto`, the form
its precision check chose on this CPU (``quantized.py``: int8, int8 with the feed-forward
outputs in fp32, or bf16 where the CPU has native bf16; kept only when it gives fp32's label on
at least 99% of the check texts and runs faster). The check set is built as scoring builds it:
half the model's own sentences (PhraseBank), half the headlines it is about to score.

Expected before measuring (AVX-512 BF16, 2 cores): the pipeline's best batch is small (16-32:
little padding), so the ratio to its best is lower than the 3.3x against batch 256; fp32 about
2.5x its best; a probe on 2,000 headlines gave bf16 1.8x fp32 at 99.95% agreement and int8
with fp32 feed-forward outputs 1.7x at 99.05%, so `auto` about 4-4.5x the best pipeline. On an
AVX2-only CPU bf16 is emulated, so `auto` falls back to an int8 form.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
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


def time_pipeline(folder: Path, texts: list[str], batch_size: int, device: str = "cpu"):
    """Seconds for ``transformers.pipeline`` to classify ``texts`` in fp32, and its
    probabilities in the model's label order."""
    from transformers import pipeline

    classify = pipeline(
        "text-classification",
        model=str(folder),
        device=device,
        dtype=torch.float32,
        top_k=None,
        trust_remote_code=True,
    )
    names = [classify.model.config.id2label[i] for i in range(classify.model.config.num_labels)]
    classify(texts[:64], batch_size=batch_size)  # warm up
    start = time.perf_counter()
    out = classify(texts, batch_size=batch_size, truncation=True)
    seconds = time.perf_counter() - start
    return seconds, np.array(
        [[{r["label"]: r["score"] for r in row}[n] for n in names] for row in out]
    )


def train_run(folder: Path, data: Path = DATA) -> Path:
    """A devmode run: the default recipe for one epoch on PhraseBank all-agree; its model."""
    from devmode.data import ingest, readers
    from devmode.db import open_db
    from devmode.finetune import worker
    from devmode.models import runs
    from devmode.models.config import TrainConfig

    db_path = folder / "devmode.db"
    with open_db(db_path) as db:
        ingest.insert_upload(
            db,
            readers.read_upload(data / PHRASEBANK),
            "phrasebank",
            ingest.ColumnMapping("text", "label"),
        )
        run = runs.create_run(db, "phrasebank", TrainConfig(epochs=1))
    worker.execute_run(db_path, run.id, echo=print)
    return worker.model_dir(db_path, run.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A devmode classifier folder (a run's model).")
    parser.add_argument(
        "--base-model",
        help="Instead of a fine-tuned run, this encoder with a head fitted on PhraseBank's "
        "pooled vectors (the GPU proof's quick model; no training).",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--batch-sizes", default="8,16,32,64,128,256", help="The pipeline's batch sizes to sweep."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="The folder holding dated_headlines/ and financial_phrasebank/.",
    )
    parser.add_argument(
        "--limit", type=int, default=3000, help="Headlines scored, spread over the file (0: all)."
    )
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    from devmode.environment import cpu_description
    from devmode.models import exports, int8, quantized
    from devmode.models.base_models import MODEL_CARD
    from devmode.models.scorers import load_scorer

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    with open(args.data / HEADLINES, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    if args.limit:
        texts = texts[:: max(1, len(texts) // args.limit)][: args.limit]
    # the check set as scoring builds it (scorers.check_texts): half the model's own sentences,
    # half the texts it is about to score, spread over them
    half = int8.CHECK_TEXTS // 2
    with open(args.data / PHRASEBANK, newline="", encoding="utf-8") as f:
        check = {"own": [row["text"] for row in csv.DictReader(f)][:half]}
    check["scored"] = texts[:: max(1, len(texts) // half)][:half]
    machine = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{cpu_description()}, {torch.get_num_threads()} threads"
    )
    print(f"{len(texts):,} headlines on {machine}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model"
        if args.model:
            shutil.copytree(args.model, model)
        elif args.base_model:
            make_classifier(model, args.base_model, args.data, args.limit)
        else:
            shutil.copytree(train_run(work), model)
        for stale in (int8.INT8_FILE, int8.INT8_CARD):
            (model / stale).unlink(missing_ok=True)
        hf = model
        if (model / MODEL_CARD).is_file():  # a devmode classifier: as `models export --format hf`
            hf = work / "hf"
            exports.write_hf(model, hf)
        rows, sweep = [], []
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            seconds, probabilities = time_pipeline(hf, texts, batch, device)
            sweep.append((batch, seconds, probabilities))
            print(f"pipeline batch {batch:>3}: {len(texts) / seconds:,.0f} texts/s", flush=True)
        best_batch, best_seconds, reference = min(sweep, key=lambda r: r[1])
        at_256 = next((r for r in sweep if r[0] == 256), sweep[-1])
        rows.append((f"pipeline (batch {best_batch}, its best)", best_seconds, reference))
        rows.append((f"pipeline (batch {at_256[0]})", at_256[1], at_256[2]))

        scorer = load_scorer(model, device=device, precision="fp32")
        scorer.score(texts[:64])  # warm up
        start = time.perf_counter()
        scores = scorer.score(texts)
        rows.append(
            (f"devmode {scorer.precision}", time.perf_counter() - start, scores.probabilities)
        )
        card = None
        if device == "cpu":
            start = time.perf_counter()
            card = quantized.build_int8(model, check)
            build_seconds = time.perf_counter() - start
            chosen = load_scorer(model, device="cpu")
            chosen.score(texts[:64])
            start = time.perf_counter()
            auto = chosen.score(texts)
            name = f"devmode auto: {card['precision']}"
            rows.append((name, time.perf_counter() - start, auto.probabilities))

    fp32_labels = scores.probabilities.argmax(1)
    print()
    print(f"{'':<44} {'texts/s':>8} {'vs best':>8} {'vs 256':>7} {'same label as fp32':>19}")
    figures = []
    for name, seconds, probs in rows:
        same = float((probs.argmax(1) == fp32_labels).mean())
        figures.append(
            {
                "side": name,
                "texts_per_s": len(texts) / seconds,
                "vs_best_pipeline": best_seconds / seconds,
                "vs_pipeline_256": at_256[1] / seconds,
                "same_label_as_fp32": same,
            }
        )
        print(
            f"{name:<44} {len(texts) / seconds:>8,.0f} {best_seconds / seconds:>7.1f}x "
            f"{at_256[1] / seconds:>6.1f}x {same:>18.2%}"
        )
    if card:
        print(
            f"precision check on {card['check_texts']:,} texts (agreement on PhraseBank / "
            f"headlines) in "
            f"{build_seconds:.1f} s: "
            + ", ".join(
                f"{c['precision']} {c['agreement_by_part']['own']:.2%} / "
                f"{c['agreement_by_part']['scored']:.2%} at {c['texts_per_s']:,.0f}/s"
                for c in card["candidates"]
            )
            + f"; fp32 {card['fp32_texts_per_s']:,.0f}/s; chose {card['precision']}"
        )
    if args.json:
        record = {"machine": machine, "texts": len(texts), "torch": torch.__version__}
        Path(args.json).write_text(
            json.dumps({**record, "results": figures, "card": card}, indent=2)
        )


if __name__ == "__main__":
    main()
