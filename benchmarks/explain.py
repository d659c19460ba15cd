"""Word explanations: how fast, and how faithful. Leave-one-word-out (occlusion) against
Integrated Gradients (captum), on Financial PhraseBank rows the model did not train on.

    $ .venv/bin/python benchmarks/explain.py                     # 500 rows of the 50-agree file
    $ .venv/bin/python benchmarks/explain.py --model FOLDER      # a saved devmode classifier

The model: all-MiniLM-L6-v2 fine-tuned by devmode for one epoch on the all-agree file (saved
in a temporary folder), or ``--model``. The rows: 500 of the 50-agree file that are not in the
all-agree file (the sentences annotators disagreed on), read from ../shared, not bundled.

Speed: one text explained alone (the median of the first 50 rows, after a warm-up; and of 50
Benzinga headlines, which are shorter), and the time per text in batches of 32; occlusion runs
on the full-precision model and on its int8 form (ONNX Runtime, as scoring uses on a CPU).
Integrated Gradients explains the first ``--ig-rows`` rows (100: it is several times slower). Faithfulness, ERASER's comprehensiveness: delete the
two words a method weighs most for the predicted class, and two words at random (seeded), and
compare how far the predicted class's probability drops (mean over rows of 3 words or more).

Expected before measuring (2 cores): occlusion needs one forward pass of a text's (words + 1)
variants and no backward pass, so about 30-60 ms a headline alone; Integrated Gradients runs
24 steps x 3 classes forward and backward, several times slower (200-400 ms). (A first probe
on the AVX2-only machine found PhraseBank's 30-word sentences much slower than that: 230 ms by
occlusion alone, about 1 s by IG, so int8 was added to the table.) Occlusion
measures exactly what comprehensiveness deletes, so its drop ratio should be the higher (3-6x
random); IG's about 2-3x, with a convergence delta under 0.05 at 24 steps.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data" / "financial_phrasebank"

from machine import cpu  # noqa: E402


def rows_not_trained_on(n: int) -> list[str]:
    def texts(name: str) -> list[str]:
        with open(DATA / name, newline="", encoding="utf-8") as f:
            return [r["text"] for r in csv.DictReader(f)]

    seen = set(texts("sentences_allagree.csv"))
    return [t for t in texts("sentences_50agree.csv") if t not in seen][:n]


def train_model(folder: Path) -> Path:
    """One epoch of devmode's default fine-tune on the all-agree file."""
    from devmode.data import examples, ingest, readers, splits
    from devmode.db import open_db
    from devmode.finetune.training import train
    from devmode.models.config import TrainConfig

    with open_db(folder / "bench.db") as db:
        ingest.insert_upload(
            db,
            readers.read_upload(DATA / "sentences_allagree.csv"),
            "allagree",
            ingest.ColumnMapping("text", "label"),
            splits.SplitSpec(0.8, 0.1, 0.1),
        )
        data = examples.load_examples(db, "allagree")
    out = folder / "model"
    result = train(TrainConfig(epochs=1), data, output_dir=out)
    print(f"trained: test accuracy {result.test['accuracy']:.3f}", flush=True)
    return out


def comprehensiveness(explainer, explanations, rng) -> tuple[float, float, int]:
    """Mean drop of the predicted class's probability with the top-2 words deleted, and with 2
    random words deleted, over rows of 3 words or more."""
    top, rand = [], []
    for why in explanations:
        n = len(why.words)
        if n < 3:
            continue
        label = explainer.labels.index(why.label)
        before = why.probabilities[why.label]
        best = set(np.argsort(-np.asarray(why.for_label), kind="stable")[:2].tolist())
        chance = set(rng.sample(range(n), 2))
        after = explainer.without_words([(why.text, best), (why.text, chance)])
        top.append(before - after[0][label])
        rand.append(before - after[1][label])
    return float(np.mean(top)), float(np.mean(rand)), len(top)


def headlines(n: int) -> list[str]:
    path = ROOT.parent / "shared" / "data" / "dated_headlines" / "headlines.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)][:n]


def measure(name, explainer, texts, short, rows) -> dict:
    explainer.explain(texts[:4])  # warm-up
    alone, alone_short = [], []
    for text in texts[:50]:
        start = time.perf_counter()
        explainer.explain([text])
        alone.append(time.perf_counter() - start)
    for text in short[:50]:
        start = time.perf_counter()
        explainer.explain([text])
        alone_short.append(time.perf_counter() - start)
    start = time.perf_counter()
    explanations = []
    for at in range(0, rows, 32):
        explanations += explainer.explain(texts[at : min(at + 32, rows)])
    per_text = (time.perf_counter() - start) / rows
    top, rand, judged = comprehensiveness(explainer, explanations, random.Random(0))
    print(f"  {name}: done", flush=True)
    return {
        "method": name,
        "alone": statistics.median(alone),
        "alone_headline": statistics.median(alone_short),
        "per_text": per_text,
        "top": top,
        "rand": rand,
        "rows": judged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A saved devmode classifier folder (default: train one).")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument(
        "--ig-rows", type=int, default=100, help="Rows Integrated Gradients explains (slow)."
    )
    parser.add_argument("--steps", default="8,24,48", help="IG step counts whose delta to show.")
    args = parser.parse_args()

    from devmode.models import quantized
    from devmode.models.explain import IG_STEPS, Explainer
    from devmode.models.inference import load_full

    print(f"machine: {cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    texts = rows_not_trained_on(args.rows)
    short = headlines(50)
    words = statistics.mean(len(t.split()) for t in texts)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else train_model(Path(tmp))
        scorer = load_full(model, "cpu")
        card = quantized.build_int8(model, texts[:200])
        print(f"int8: same label as fp32 on {card['agreement']:.1%} of 200 rows", flush=True)
        int8 = quantized.load_int8(model)
        table = [
            measure("occlusion (fp32)", Explainer(scorer), texts, short, len(texts)),
            measure("occlusion (int8)", Explainer(int8), texts, short, len(texts)),
            measure(
                "integrated gradients (fp32)",
                Explainer(scorer, method="integrated-gradients"),
                texts,
                short,
                min(args.ig_rows, len(texts)),
            ),
        ]
        print(
            f"\n{len(texts)} rows of PhraseBank 50-agree not in all-agree ({words:.1f} words on "
            f"average); alone = one text explained by itself (median of 50); headline = a "
            f"Benzinga headline alone; model {model.name}"
        )
        print(
            "method | alone | headline alone | in batches of 32 (per text) | top-2 drop | "
            "random-2 drop | ratio | rows"
        )
        print("--- | --- | --- | --- | --- | --- | --- | ---")
        for r in table:
            print(
                f"{r['method']} | {r['alone'] * 1000:.0f} ms | {r['alone_headline'] * 1000:.0f} ms"
                f" | {r['per_text'] * 1000:.0f} ms | {r['top']:.3f} | {r['rand']:.3f} | "
                f"{r['top'] / r['rand'] if r['rand'] else float('nan'):.1f}x | {r['rows']}"
            )
        print(
            f"\nIntegrated Gradients: largest |convergence delta| over 32 rows (default {IG_STEPS})"
        )
        for steps in [int(x) for x in args.steps.split(",")]:
            explainer = Explainer(scorer, method="integrated-gradients", steps=steps)
            explainer.explain(texts[:32])
            print(f"  {steps:>3} steps: {explainer.last_delta:.4f}")


if __name__ == "__main__":
    main()
