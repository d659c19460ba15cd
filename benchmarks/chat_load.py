"""The embedded chat model's first load: transformers' GGUF loader against devmode's.

    .venv/bin/python benchmarks/chat_load.py [--repeat 2]

Each side runs in a fresh process, taking turns, so neither finds the file in a warm cache the
other did not have. Both read the same GGUF file (SmolLM2-135M-Instruct, Q4_1) and return float32
weights by transformers' names; the script then checks that every tensor is the same bit for bit
and that the configs agree on every field the decoder reads.

    side                                         first load (s)
    transformers from_pretrained(gguf_file=...)  ...
    devmode gguf_weights.read_llama              ...

Expected before measuring: devmode about 3x faster. transformers parses every metadata field
twice and maps the tensor names once per submodule; the GGUF reader and the de-quantizing,
which both sides share, take about 4.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SIDES = {
    "transformers": "transformers from_pretrained(gguf_file=...)",
    "devmode": "devmode gguf_weights.read_llama",
}
CONFIG_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "vocab_size",
    "tie_word_embeddings",
)


def load(side: str, out: Path | None) -> dict:
    """One side's load in this process: seconds, and the weights saved to ``out`` if given."""
    import torch

    from devmode.chat.backends import embedded_gguf_file
    from devmode.chat.gguf_weights import read_llama

    gguf = embedded_gguf_file()
    started = time.perf_counter()
    if side == "transformers":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        config, weights = model.config, dict(model.state_dict())
    else:
        config, weights = read_llama(gguf)
    seconds = time.perf_counter() - started
    if out is not None:
        from safetensors.torch import save_file

        tied = config.tie_word_embeddings
        save_file(
            {k: v.contiguous() for k, v in weights.items() if not (tied and k == "lm_head.weight")},
            out,
        )
    return {"seconds": seconds, "config": {f: getattr(config, f, None) for f in CONFIG_FIELDS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: load this side, print JSON
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(load(args.one, Path(args.out) if args.out else None)))
        return

    from safetensors.torch import load_file

    times: dict[str, list[float]] = {side: [] for side in SIDES}
    configs, files = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for turn in range(args.repeat):
            for side in SIDES:
                out = Path(folder) / f"{side}.safetensors" if turn == 0 else None
                command = [sys.executable, __file__, "--one", side]
                done = subprocess.run(
                    command + (["--out", str(out)] if out else []),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                times[side].append(result["seconds"])
                configs[side] = result["config"]
                if out:
                    files[side] = load_file(out)
        a, b = files["transformers"], files["devmode"]
        same = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    print(f"CPU: {cpu()}")
    print(f"{'side':<46} first load (s, median of {args.repeat})")
    for side, label in SIDES.items():
        print(f"{label:<46} {statistics.median(times[side]):.2f}")
    speedup = statistics.median(times["transformers"]) / statistics.median(times["devmode"])
    print(f"devmode is {speedup:.1f}x faster")
    print(f"same tensors, bit for bit: {same} ({len(b)} tensors)")
    print(f"same config fields: {configs['transformers'] == configs['devmode']}")
    if configs["transformers"] != configs["devmode"]:
        print(json.dumps(configs, indent=1))
    tokenizers()


def tokenizers() -> None:
    """The tokenizer from the GGUF file: AutoTokenizer against the class it picks, called
    directly (devmode's), timed once each, and their ids compared on PhraseBank and a chat."""
    import csv

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from devmode.chat.backends import embedded_gguf_file

    gguf = embedded_gguf_file()
    loaded, seconds = {}, {}
    for side, cls in (("AutoTokenizer", AutoTokenizer), ("devmode", PreTrainedTokenizerFast)):
        started = time.perf_counter()
        loaded[side] = cls.from_pretrained(gguf.parent, gguf_file=gguf.name)
        seconds[side] = time.perf_counter() - started
    phrasebank = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.csv"
    with open(phrasebank, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    chat = [{"role": "system", "content": texts[0]}, {"role": "user", "content": texts[1]}]
    a, b = loaded["AutoTokenizer"], loaded["devmode"]
    same = type(a) is type(b) and all(a(t)["input_ids"] == b(t)["input_ids"] for t in texts)
    same = same and a.apply_chat_template(chat, add_generation_prompt=True) == (
        b.apply_chat_template(chat, add_generation_prompt=True)
    )
    print(
        f"tokenizer: AutoTokenizer {seconds['AutoTokenizer']:.2f} s, PreTrainedTokenizerFast "
        f"(devmode) {seconds['devmode']:.2f} s; the same ids on {len(texts):,} PhraseBank "
        f"sentences and a chat template: {same}"
    )


if __name__ == "__main__":
    main()
