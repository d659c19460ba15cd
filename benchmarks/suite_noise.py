"""Does a sampled suite tell noise from a regression? Unchanged reruns against a degradation.

    $ .venv/bin/python benchmarks/suite_noise.py                 # 20 reruns, 5 degraded runs
    $ .venv/bin/python benchmarks/suite_noise.py --reruns 4 --degraded 2 --prompts 4   # a look

A suite of 10 prompts x 2 variants, temperature 0.9, 5 repeats, min_pass_rate 0.6, on the
embedded SmolLM2-135M-Instruct (the model loaded once). The first run is the baseline. Then:

- ``--reruns`` unchanged runs, each compared with the first: how many flag a regression
  (``bench run --baseline``'s rule: Fisher's exact test, one-sided, Benjamini-Hochberg, at 0.05);
- ``--degraded`` runs with max tokens cut to 3 (a real regression: the replies lose the words
  the assertions look for), each compared with the first: how many flag one.

Goals (issue 32): at most 1 of 20 unchanged reruns flags a regression; all 5 degraded runs do.
Expected before measuring: 0-1 of 20 (BH at 0.05 over 20 cells keeps the chance of any false
flag per comparison near 5%, less where cells pass always or never); 5 of 5 degraded (every
cell falls to 0 passes). Also timed: rescoring stored replies (no model), run by run, for the
baseline and the first reruns until 1,000 replies (goal: <= 5 s for 1,000; expected 1-2 s, most
of it the per-run work of reading the suite and writing a new run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu  # noqa: E402

# (id, prompt, any of these words passes): words a one-sentence answer holds, none of them
# among a reply's first three tokens, so max tokens 3 is a real degradation.
PROMPTS = [
    (
        "risk",
        "Name one risk of holding a corporate bond, in one sentence.",
        [
            "default",
            "interest",
            "inflation",
            "liquidity",
            "issuer",
            "rate",
            "debt",
            "loss",
            "market",
        ],
    ),
    (
        "rate",
        "What happens to bond prices when interest rates rise? One sentence.",
        ["price", "value"],
    ),
    (
        "stock",
        "What is a stock? Answer in one sentence.",
        ["company", "companies", "ownership", "corporation"],
    ),
    (
        "dividend",
        "What is a dividend? Answer in one sentence.",
        ["share", "profit", "earning", "payment", "paid"],
    ),
    (
        "inflation",
        "What is inflation? Answer in one sentence.",
        ["price", "cost", "increase", "rise", "rising", "goods"],
    ),
    (
        "etf",
        "What is an ETF? Answer in one sentence.",
        ["index", "stock", "invest", "basket", "securities"],
    ),
    (
        "bank",
        "What does a central bank do? One sentence.",
        ["monetary", "interest", "money", "econom", "inflation"],
    ),
    (
        "yield",
        "What is a bond's yield? One sentence.",
        ["interest", "return", "income", "rate", "price"],
    ),
    (
        "diversify",
        "Why diversify a portfolio? One sentence.",
        ["risk", "loss", "spread", "volatil"],
    ),
    (
        "earnings",
        "What are a company's earnings? One sentence.",
        ["profit", "income", "revenue", "expense"],
    ),
]


def noise_suite(n_prompts: int, max_tokens: int | None = None):
    from devmode.suites.suite import Suite

    prompts = [
        {"id": pid, "text": text, "assert": [{"type": "icontains-any", "value": words}]}
        for pid, text, words in PROMPTS[:n_prompts]
    ]
    variants = [{"name": "short", "max_tokens": 24}, {"name": "long", "max_tokens": 40}]
    if max_tokens is not None:
        variants = [{**v, "max_tokens": max_tokens} for v in variants]
    return Suite.from_dict(
        {
            "name": "noise",
            "limits": {"temperature": 0.9, "top_p": 0.95},
            "backend": "embedded",
            "repeat": 5,
            "min_pass_rate": 0.6,
            "prompts": prompts,
            "variants": variants,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--degraded", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=10)
    args = parser.parse_args()
    from devmode import environment
    from devmode.chat.backends import make_backend
    from devmode.db import open_db
    from devmode.suites import reports, runner, store

    print(f"CPU: {cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "noise.db"
        loaded = {}

        def backend_for(spec):  # the embedded model once for every run
            if spec not in loaded:
                loaded[spec] = make_backend(spec, cache_dir=environment.chat_model_dir(db_path))
            return loaded[spec]

        def run(suite) -> dict:
            with open_db(db_path) as db:
                created = store.create_run(db, suite)
            runner.execute_run(db_path, created.id, backends=backend_for)
            with open_db(db_path) as db:
                return reports.run_report(db, created.id)

        start = time.perf_counter()
        first = run(noise_suite(args.prompts))
        seconds = time.perf_counter() - start
        flaky = sum(c["flaky"] for c in first["cells"])
        print(
            f"baseline: {first['summary']['replies']} replies in {seconds:.0f} s, "
            f"{flaky} of {len(first['cells'])} cells flaky"
        )
        false_flags = []
        reruns = []
        for i in range(args.reruns):
            reruns.append(run(noise_suite(args.prompts)))
            diff = reports.compare(first, reruns[-1])
            false_flags.append(len(diff["regressions"]))
            print(f"  rerun {i + 1}: {len(diff['regressions'])} cells flagged, "
                  f"{len(diff['flaky'])} flaky", flush=True)  # fmt: skip
        caught = []
        for i in range(args.degraded):
            diff = reports.compare(first, run(noise_suite(args.prompts, max_tokens=3)))
            caught.append(len(diff["regressions"]))
            print(f"  degraded {i + 1}: {len(diff['regressions'])} cells flagged", flush=True)
        rescore_s, rescored_replies = 0.0, 0
        for report in [first, *reruns]:
            if rescored_replies >= 1000:
                break
            start = time.perf_counter()
            runner.rescore(db_path, report["run"])
            rescore_s += time.perf_counter() - start
            rescored_replies += report["summary"]["replies"]
        print(f"\n{'comparison':<36} {'flagged':>8} {'of':>4} {'goal':>12}")
        print(f"{'unchanged reruns':<36} {sum(n > 0 for n in false_flags):>8} "
              f"{len(false_flags):>4} {'<= 1 of 20':>12}")  # fmt: skip
        print(f"{'max tokens 3':<36} {sum(n > 0 for n in caught):>8} {len(caught):>4} "
              f"{'all':>12}")  # fmt: skip
        print(
            f"rescore of {rescored_replies} stored replies (no model), run by run: "
            f"{rescore_s:.2f} s ({1000 * rescore_s / max(rescored_replies, 1):.2f} ms a reply)"
        )


if __name__ == "__main__":
    main()
