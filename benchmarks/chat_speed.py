"""The embedded chat model's speed: transformers' generate() against devmode's decoder.

    $ .venv/bin/python benchmarks/chat_speed.py                 # all variants, 3 repeats each
    $ .venv/bin/python benchmarks/chat_speed.py --repeat 5 --new-tokens 128
    $ .venv/bin/python benchmarks/chat_speed.py --variants "devmode int8" --baseline c2be12d
    $ .venv/bin/python benchmarks/chat_speed.py --emulate avx2   # another CPU kind's kernels

Every variant answers the same chat prompt (about 200 tokens with the template) greedily with
SmolLM2-135M-Instruct on this machine, in its own process (so each peak memory is its own):

- ``generate fp32``: what a user would write: ``model.generate(..., streamer=TextIteratorStreamer)``
  in a thread, timing the first streamed text and the rest;
- ``devmode fp32 / bf16 / int8 / int4``: ``EmbeddedBackend`` (the lean decoder) at each
  precision, through ``replies.respond`` exactly as the sandbox streams a reply, with the
  attention path picked by timing at load;
- ``devmode auto``: what the sandbox runs: the weight format and the attention path both
  picked by timing at load (the table's last column says which);
- ``devmode int8 before``: the same, with ``decoder.py`` as it was at ``--baseline`` (a git
  revision; by default c2be12d, the decoder when issue 17 asked for 100 tokens/s).

Then the old int8 decoder, today's int8 (products attention, as before) and today's ``auto``
side by side in one process, taking turns (so that all see the same machine: two runs in
separate processes differ by up to 10% here, and by more on a noisy one), and how many greedy
answers on the benchmark's prompts (the chat prompt and 8 PhraseBank questions, 64 tokens
each) are the same: a change that rounds differently shows up here (since 2026-12-08 the
decoder's activations are float32 on the CPU, so today's int8 no longer matches c2be12d's bit
for bit); ``auto`` may pick another format, which rounds differently again. The quality gate
is each devmode variant's agreement with float32: at least 0.95 (``GATE``), or the run exits 1.

``--emulate avx2`` runs the timed processes with torch and the libraries under it held to an
AVX2-only CPU's kernels (``machine.EMULATIONS``): the kernels are that kind's, the memory and
clock this machine's, and the CPU line says so.

Time to first token includes the prompt's forward pass; tokens/s counts the tokens after the
first over the time after the first (the decoding rate). "Agrees" is the share of next-token
predictions (teacher-forced over 300 tokens of PhraseBank text, one token at a time as in
decoding) on which the variant picks the same token as transformers in float32. RSS is the
process's resident memory after the replies (Python, torch and the loaded model); peak RSS the
most it held, loading included. Median of the repeats.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import EMULATIONS, cpu_line, emulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHRASEBANK = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.csv"
VARIANTS = [
    "generate fp32",
    "devmode fp32",
    "devmode bf16",
    "devmode int8",
    "devmode int4",
    "devmode auto",
    "devmode int8 before",
]
BASELINE = "c2be12d"  # decoder.py when issue 17 was filed
GATE = 0.95  # the least next-token agreement with float32 a devmode variant may have
DOCUMENT = (
    "Bond yields rose on Tuesday as investors weighed the central bank's outlook for inflation, "
    "while equities were mixed and the dollar firmed against major currencies. "
) * 6
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": DOCUMENT + "Summarise the market in one sentence."},
]


def greedy_prompts() -> list[list[dict]]:
    """The prompts whose greedy answers must not change: the chat prompt and 8 questions."""
    with open(PHRASEBANK, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:8]
    questions = [f"Is this good or bad news? {row['text']}" for row in rows]
    return [MESSAGES] + [[{"role": "user", "content": q}] for q in questions]


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids the model reads for ``messages``, through its chat template."""
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]


def baseline_decoder_module(revision: str):
    """``devmode/chat/decoder.py`` as it was at ``revision``, imported as its own module."""
    import types

    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:devmode/chat/decoder.py"],
        capture_output=True, text=True,
    )  # fmt: skip
    if source.returncode:
        sys.exit(
            f"Cannot read the baseline decoder at {revision!r}: {source.stderr.strip()}. "
            "Run from a git clone, or pass --baseline with a revision that has the file."
        )
    module = types.ModuleType("decoder_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source.stdout, f"{revision}:devmode/chat/decoder.py", "exec"), module.__dict__)
    return module


def time_greedy(decoder, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """First-token seconds and tokens/s after it, for a greedy answer straight off the decoder."""
    start = time.perf_counter()
    first, count = None, 0
    for _ in decoder.generate(prompt, new_tokens):
        count += 1
        first = first or time.perf_counter() - start
    return first, (count - 1) / (time.perf_counter() - start - first)


def side_by_side(folder: Path, revision: str, repeat: int, new_tokens: int) -> dict:
    """The int8 decoder at ``revision``, today's int8 and today's ``auto``, taking turns; how
    many greedy answers each shares with the old one."""
    from transformers import AutoTokenizer

    from devmode.chat.decoder import LlamaDecoder

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = chat_ids(tokenizer, MESSAGES)
    decoders = {
        "before": baseline_decoder_module(revision).LlamaDecoder.from_pretrained(folder, "int8"),
        "int8 now": LlamaDecoder.from_pretrained(folder, "int8", attention="products"),
        "auto now": LlamaDecoder.from_pretrained(folder, "auto", attention="auto"),
    }
    timings = {name: [] for name in decoders}
    for _ in range(repeat + 1):  # the first round is a warm-up
        for name, decoder in decoders.items():
            timings[name].append(time_greedy(decoder, prompt, new_tokens))
    prompts = [chat_ids(tokenizer, messages) for messages in greedy_prompts()]
    answers = {n: [list(d.generate(p, 64)) for p in prompts] for n, d in decoders.items()}
    return {
        "revision": revision,
        "rounds": repeat,
        "auto_engine": decoders["auto now"].describe(),
        **{
            name: {
                "first_token_s": statistics.median(t[0] for t in runs[1:]),
                "tokens_per_s": statistics.median(t[1] for t in runs[1:]),
            }
            for name, runs in timings.items()
        },
        "greedy_identical": {
            name: sum(a == b for a, b in zip(answers["before"], answers[name], strict=True))
            for name in ("int8 now", "auto now")
        },
        "greedy_prompts": len(prompts),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now: what the loaded model holds while it serves."""
    gc.collect()
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def reference_top1(folder: Path, ids: list[int]):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].argmax(-1).tolist()


def agreement(decoder, ids: list[int], reference: list[int], start: int = 100) -> float:
    """Teacher-forced next-token agreement with ``reference`` from position ``start`` on."""
    import torch

    cache = decoder.new_cache(len(ids))
    with torch.inference_mode():
        logits = decoder.forward(torch.tensor([ids[:start]]), 0, cache)
        same = []
        for position in range(start, len(ids)):
            same.append(int(logits.argmax()) == reference[position - 1])
            logits = decoder.forward(torch.tensor([[ids[position]]]), position, cache)
    return sum(same) / len(same)


def run_variant(variant: str, folder: Path, repeat: int, new_tokens: int, baseline: str) -> dict:
    """One variant in this process: figures as a dict."""
    import threading

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from devmode.chat import context, limits, replies
    from devmode.chat.backends import EmbeddedBackend
    from devmode.chat.decoder import LlamaDecoder

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = chat_ids(tokenizer, MESSAGES)
    with open(PHRASEBANK, newline="", encoding="utf-8") as f:
        text = " ".join(r["text"] for r in list(csv.DictReader(f))[:60])
    ids = tokenizer(text)["input_ids"][:400]
    firsts, rates = [], []
    agrees = None
    if variant == "generate fp32":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        inputs = {"input_ids": torch.tensor([prompt]), "attention_mask": torch.ones(1, len(prompt))}
        for _ in range(repeat + 1):  # the first is a warm-up
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
            settings = dict(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                streamer=streamer,
                pad_token_id=tokenizer.eos_token_id,
            )
            start = time.perf_counter()
            thread = threading.Thread(target=lambda s=settings: model.generate(**s))
            thread.start()
            first = None
            for piece in streamer:
                if piece and first is None:
                    first = time.perf_counter() - start
            thread.join()
            total = time.perf_counter() - start
            firsts.append(first)
            rates.append((new_tokens - 1) / (total - first))
        memory = {"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
        agrees, engine = 1.0, "transformers fp32"
    else:
        precision = variant.split()[1]
        before = variant.endswith("before")
        if before:
            old = baseline_decoder_module(baseline).LlamaDecoder
            decoder = old.from_pretrained(folder, precision)
            engine = f"int8 weights, the decoder of {baseline}"
            decoder.describe = lambda timings=False: engine  # what EmbeddedBackend reports
        else:
            decoder = LlamaDecoder.from_pretrained(folder, precision, attention="auto")
            engine = decoder.describe(timings=True)
        backend = EmbeddedBackend(decoder, tokenizer)
        plan = context.ContextPlan.from_messages(MESSAGES)
        limits = limits.ChatLimits(max_tokens=new_tokens, temperature=0)
        for _ in range(repeat + 1):
            reply = replies.respond(backend, plan, limits)
            firsts.append(reply.first_token_s)
            done = reply.completion_tokens - 1
            rates.append(done / (reply.total_s - reply.first_token_s))
        memory = {"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}  # before the reference loads
        agrees = agreement(backend.decoder, ids, reference_top1(folder, ids))
    return {
        "variant": variant,
        "prompt_tokens": len(prompt),
        "first_token_s": statistics.median(firsts[1:]),
        "tokens_per_s": statistics.median(rates[1:]),
        "agrees": agrees,
        **memory,
        "threads": torch.get_num_threads(),
        "engine": engine,
    }


def converted_folder(cache: Path) -> Path:
    from devmode.chat.backends import EMBEDDED_CHAT_MODEL, EmbeddedBackend

    EmbeddedBackend.load(cache, "fp32")  # converts the GGUF file once
    return cache / EMBEDDED_CHAT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"git revision of the decoder to compare with (default {BASELINE}); 'none' skips it",
    )
    parser.add_argument("--cache", help="Folder for the converted model (default: a temp dir).")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: run this variant, print JSON
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="Also write the figures to this file.")
    parser.add_argument(
        "--emulate",
        choices=sorted(EMULATIONS),
        help="Hold torch to another CPU kind's kernels in the timed processes (machine.py).",
    )
    args = parser.parse_args()
    emulate(args.emulate)
    if args.one == "side by side":
        figures = side_by_side(Path(args.folder), args.baseline, args.repeat, args.new_tokens)
        print("RESULT " + json.dumps(figures))
        return
    if args.one:
        figures = run_variant(
            args.one, Path(args.folder), args.repeat, args.new_tokens, args.baseline
        )
        print("RESULT " + json.dumps(figures))
        return
    variants = args.variants.split(",")
    if args.baseline == "none":
        variants = [v for v in variants if not v.endswith("before")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = converted_folder(Path(args.cache or tmp))

        def worker(variant: str) -> dict:
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--folder", str(folder),
                 "--repeat", str(args.repeat), "--new-tokens", str(args.new_tokens),
                 "--baseline", args.baseline,
                 *(["--emulate", args.emulate] if args.emulate else [])],
                capture_output=True, text=True, check=True,
                env={**os.environ, **EMULATIONS.get(args.emulate, {})},
            )  # fmt: skip
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            return json.loads(line[len("RESULT ") :])

        results = []
        for variant in variants:
            results.append(worker(variant))
            r = results[-1]
            print(
                f"  {variant}: {r['first_token_s']:.3f} s, {r['tokens_per_s']:.1f} tokens/s",
                flush=True,
            )
        pair = worker("side by side") if args.baseline != "none" else None
    base = results[0]
    print()
    print(f"CPU: {cpu_line(args.emulate)}")
    print(
        f"SmolLM2-135M-Instruct, {base['prompt_tokens']} prompt tokens, {args.new_tokens} new, "
        f"greedy, {base['threads']} threads, median of {args.repeat}"
    )
    print(
        f"{'variant':<15} {'first token':>12} {'tokens/s':>9} {'speed-up':>9} "
        f"{'agrees w/ fp32':>15} {'RSS':>8} {'peak RSS':>9}"
    )
    for r in results:
        print(
            f"{r['variant']:<15} {r['first_token_s']:>10.3f} s {r['tokens_per_s']:>9.1f} "
            f"{r['tokens_per_s'] / base['tokens_per_s']:>8.1f}x {r['agrees']:>15.3f} "
            f"{r['rss_mb']:>5.0f} MB {r['peak_rss_mb']:>6.0f} MB"
        )
    print()
    for r in results:  # what each variant ran, and what was timed to pick it
        print(f"{r['variant']:<15} {r['engine']}")
    if pair:
        print()
        print(
            f"int8 before ({pair['revision']}), int8 now and auto now ({pair['auto_engine']}), "
            f"taking turns in one process, median of {pair['rounds']}; greedy tokens straight "
            "off the decoder"
        )
        print(f"{'decoder':<15} {'first token':>12} {'tokens/s':>9} {'same greedy answers':>20}")
        for name in ("before", "int8 now", "auto now"):
            same = pair["greedy_identical"].get(name)
            shared = "" if same is None else f"{same} of {pair['greedy_prompts']}"
            print(
                f"{name:<15} {pair[name]['first_token_s']:>10.3f} s "
                f"{pair[name]['tokens_per_s']:>9.1f} {shared:>20}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"cpu": cpu_line(args.emulate), "variants": results, "side_by_side": pair}, indent=2
            )
        )
    below = [r["variant"] for r in results if r["agrees"] < GATE]
    print()
    print(f"quality gate (agreement with fp32 at least {GATE}): " + (
        "failed by " + ", ".join(below) if below else "passed"))  # fmt: skip
    if below:
        sys.exit(1)


if __name__ == "__main__":
    main()
