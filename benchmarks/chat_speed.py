"""The embedded chat model's speed: transformers' generate() against devmode's decoder.

    $ .venv/bin/python benchmarks/chat_speed.py                 # all variants, 3 repeats each
    $ .venv/bin/python benchmarks/chat_speed.py --repeat 5 --new-tokens 128

Every variant answers the same chat prompt (about 200 tokens with the template) greedily with
SmolLM2-135M-Instruct on this machine, in its own process (so each peak memory is its own):

- ``generate fp32``: what a user would write: ``model.generate(..., streamer=TextIteratorStreamer)``
  in a thread, timing the first streamed text and the rest;
- ``devmode fp32 / bf16 / int8``: ``EmbeddedBackend`` (the lean decoder) at each precision,
  through ``replies.respond`` exactly as the sandbox streams a reply.

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
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHRASEBANK = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.csv"
VARIANTS = ["generate fp32", "devmode fp32", "devmode bf16", "devmode int8"]
DOCUMENT = (
    "Bond yields rose on Tuesday as investors weighed the central bank's outlook for inflation, "
    "while equities were mixed and the dollar firmed against major currencies. "
) * 6
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": DOCUMENT + "Summarise the market in one sentence."},
]


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


def run_variant(variant: str, folder: Path, repeat: int, new_tokens: int) -> dict:
    """One variant in this process: figures as a dict."""
    import threading

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from devmode.chat import context, limits, replies
    from devmode.chat.backends import EmbeddedBackend
    from devmode.chat.decoder import LlamaDecoder

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
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
        agrees = 1.0
    else:
        precision = variant.split()[1]
        backend = EmbeddedBackend(LlamaDecoder.from_pretrained(folder, precision), tokenizer)
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
    parser.add_argument("--cache", help="Folder for the converted model (default: a temp dir).")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: run this variant, print JSON
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    if args.one:
        figures = run_variant(args.one, Path(args.folder), args.repeat, args.new_tokens)
        print("RESULT " + json.dumps(figures))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = converted_folder(Path(args.cache or tmp))
        results = []
        for variant in args.variants.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--folder", str(folder),
                 "--repeat", str(args.repeat), "--new-tokens", str(args.new_tokens)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            results.append(json.loads(line[len("RESULT ") :]))
            r = results[-1]
            print(
                f"  {variant}: {r['first_token_s']:.3f} s, {r['tokens_per_s']:.1f} tokens/s",
                flush=True,
            )
    base = results[0]
    print()
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
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
