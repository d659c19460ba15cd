"""A suite's speed on the embedded model: 20 prompts x 4 variants x 3 repeats (max_tokens 48),
with assertions, through the real runner into a real SQLite file.

    $ .venv/bin/python benchmarks/suite_speed.py
    $ .venv/bin/python benchmarks/suite_speed.py --prompts 5 --repeat 1     # a quick look

Prints the wall time of the run (the model loaded beforehand, as a warm worker has it), the
time spent generating (the sum of every reply's own time, first token included) and the share
spent outside generation: planning the context, checking assertions, storing each reply in its
own transaction, progress. The goal: the whole run in 5 minutes or less on 2 cores, and under
5% outside generation.

Expected before measuring: about 48 tokens a reply at 55 tokens/s plus 0.2 s to the first
token, so about 1.1 s a reply and 4.4 minutes for 240 replies, 1-2% outside generation (a
transaction and a few regex and JSON checks per reply).

Measured (2 cores, int8 weights): 240 replies, 10,179 completion tokens in 127 s (goal 300 s);
126.6 s of it generating, 0.4 s (0.3%) outside. Faster than expected: many replies end early
(a stop sequence, the model's own end), and short prompts reach the first token sooner.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What is a bond?",
    "What does a rising yield curve suggest?",
    "Name one risk of holding long-dated bonds.",
    "What is a dividend?",
    "Why do central banks raise rates?",
    "What is market capitalisation?",
    "What is a stock split?",
    "What does EBITDA measure?",
    "What is a credit rating?",
    "What is inflation?",
    "What is a price-to-earnings ratio?",
    "What does a hedge fund do?",
    "What is liquidity in markets?",
    "What is a recession?",
    "What is an index fund?",
    "What is short selling?",
    "What is a corporate bond spread?",
    "What does quantitative easing mean?",
    "What is foreign exchange risk?",
    "What is a balance sheet?",
]
VARIANTS = """\
variants:
  - {name: greedy, max_tokens: 48, temperature: 0}
  - {name: one sentence, max_tokens: 48, temperature: 0, stop: ["."]}
  - {name: no guarantees, max_tokens: 48, temperature: 0, banned: [guarantee, guaranteed]}
  - {name: sampled, max_tokens: 48, temperature: 0.7, top_p: 0.9}
assert:
  - {type: not-icontains, value: "as an AI"}
  - {type: regex, value: "[A-Za-z]{3,}"}
  - {type: completion-tokens, value: 48}
  - {type: latency, threshold: 10000}
  - {type: stopped-by, value: max_tokens}
"""


def suite_text(prompts: int, repeat: int) -> str:
    lines = [
        "name: speed",
        f"repeat: {repeat}",
        "min_pass_rate: 0.6",
        "prompts:",
        *(f'  - "{q}"' for q in QUESTIONS[:prompts]),
    ]
    return "\n".join(lines) + "\n" + VARIANTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from devmode import environment
    from devmode.chat.backends import EmbeddedBackend
    from devmode.db import open_db
    from devmode.suites import runner, store
    from devmode.suites.files import parse_suite

    suite = parse_suite(suite_text(args.prompts, args.repeat), source="speed.yaml")
    with tempfile.TemporaryDirectory() as folder:
        db_path = str(Path(folder) / "speed.db")
        start = time.perf_counter()
        backend = EmbeddedBackend.load(environment.chat_model_dir(db_path))
        loaded = time.perf_counter() - start
        with open_db(db_path) as db:
            run = store.create_run(db, suite)
        last = [0.0]

        def progress(row, done, total):
            now = time.perf_counter() - begin
            if now - last[0] > 15 or done == total:
                print(f"  {done}/{total} replies, {now:.0f} s", flush=True)
                last[0] = now

        begin = time.perf_counter()
        finished = runner.execute_run(
            db_path, run.id, backends=lambda spec: backend, on_result=progress
        )
        wall = time.perf_counter() - begin
        with open_db(db_path) as db:
            rows = store.results(db, run.id)
    generating = sum(r["total_s"] for r in rows)
    tokens = sum(r["completion_tokens"] or 0 for r in rows)
    print()
    print(
        f"{args.prompts} prompts x {len(suite.variants)} variants x {args.repeat} repeats = "
        f"{len(rows)} replies, {tokens:,} completion tokens; model loaded in {loaded:.1f} s"
    )
    print(f"{'wall time of the run':<34} {wall:8.1f} s  (goal: 300 s)")
    print(f"{'generating (sum of replies)':<34} {generating:8.1f} s")
    print(
        f"{'outside generation':<34} {wall - generating:8.1f} s  "
        f"({(wall - generating) / wall:.1%}; goal: under 5%)"
    )
    print(f"{'cells passed':<34} {finished.summary['passed']:>8} of {finished.summary['cells']}")


if __name__ == "__main__":
    main()
