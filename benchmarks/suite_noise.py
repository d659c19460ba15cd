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
cell falls to 0 passes). Also timed: rescoring the first run's stored replies (no model).
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

PROMPTS = [
    ("risk", "Name one risk of holding a corporate bond, in one sentence.", "risk"),
    ("rate", "What happens to bond prices when interest rates rise? One sentence.", "price"),
    ("stock", "What is a stock? Answer in one sentence.", "company"),
    ("dividend", "What is a dividend? Answer in one sentence.", "share"),
    ("inflation", "What is inflation? Answer in one sentence.", "price"),
    ("etf", "What is an ETF? Answer in one sentence.", "fund"),
    ("bank", "What does a central bank do? One sentence.", "rate"),
    ("yield", "What is a bond's yield? One sentence.", "return"),
    ("diversify", "Why diversify a portfolio? One sentence.", "risk"),
    ("earnings", "What are a company's earnings? One sentence.", "profit"),
]


def noise_suite(n_prompts: int, max_tokens: int | None = None):
    from devmode.suites.suite import Suite

    prompts = [
        {"id": pid, "text": text, "assert": [{"type": "icontains", "value": word}]}
        for pid, text, word in PROMPTS[:n_prompts]
    ]
    variants = [{"name": "short", "max_tokens": 32}, {"name": "long", "max_tokens": 48}]
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
        for i in range(args.reruns):
            diff = reports.compare(first, run(noise_suite(args.prompts)))
            false_flags.append(len(diff["regressions"]))
            print(f"  rerun {i + 1}: {len(diff['regressions'])} cells flagged, "
                  f"{len(diff['flaky'])} flaky", flush=True)  # fmt: skip
        caught = []
        for i in range(args.degraded):
            diff = reports.compare(first, run(noise_suite(args.prompts, max_tokens=3)))
            caught.append(len(diff["regressions"]))
            print(f"  degraded {i + 1}: {len(diff['regressions'])} cells flagged", flush=True)
        start = time.perf_counter()
        rescored = runner.rescore(db_path, first["run"])
        rescore_s = time.perf_counter() - start
        print(f"\n{'comparison':<36} {'flagged':>8} {'of':>4} {'goal':>12}")
        print(f"{'unchanged reruns':<36} {sum(n > 0 for n in false_flags):>8} "
              f"{len(false_flags):>4} {'<= 1 of 20':>12}")  # fmt: skip
        print(f"{'max tokens 3':<36} {sum(n > 0 for n in caught):>8} {len(caught):>4} "
              f"{'all':>12}")  # fmt: skip
        print(
            f"rescore of {first['summary']['replies']} stored replies (no model): "
            f"{rescore_s:.2f} s (run {rescored.id})"
        )


if __name__ == "__main__":
    main()
