"""The masked-word head on the masked positions only (devmode's adaptation step) against
transformers' ``BertForMaskedLM`` loss, which runs the vocabulary-wide head on every token.

    $ .venv/bin/python benchmarks/adaptation_head.py --steps 20

Same model (the embedded all-MiniLM-L6-v2 with a fresh head), same batches of headlines
(batch 32, BERT masking at 15%), forward + backward + AdamW step, the two sides alternating
step by step. Prints seconds per step (median) and texts per second for each, and checks that
both give the same loss on the same batch.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu  # noqa: E402

HEADLINES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dated_headlines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    from devmode.environment import usable_cpus
    from devmode.finetune.adaptation import _head_of
    from devmode.models.base_models import embedded_classifier_dir

    print(f"CPU: {cpu()}")
    torch.set_num_threads(usable_cpus())
    source = str(embedded_classifier_dir())
    tokenizer = AutoTokenizer.from_pretrained(source)
    with open(HEADLINES / "headlines.csv", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][: args.batch_size * args.steps]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    torch.manual_seed(0)
    batches = [
        collator(
            [tokenizer(t, truncation=True, max_length=128) for t in texts[i : i + args.batch_size]]
        )
        for i in range(0, len(texts), args.batch_size)
    ]

    def make():
        model = AutoModelForMaskedLM.from_pretrained(source)
        return model, torch.optim.AdamW(model.parameters(), lr=5e-5)

    full_model, full_opt = make()
    ours_model, ours_opt = make()
    ours_model.load_state_dict(full_model.state_dict())
    head = _head_of(ours_model)

    def full_step(batch):
        loss = full_model(**batch).loss
        loss.backward()
        full_opt.step()
        full_opt.zero_grad()
        return loss.item()

    def ours_step(batch):
        hidden = ours_model.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        masked = batch["labels"] != -100
        loss = F.cross_entropy(head(hidden[masked]), batch["labels"][masked])
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad()
        return loss.item()

    first = batches[0]
    assert abs(full_step(first) - ours_step(first)) < 1e-4, "the two losses differ"
    times = {
        "transformers BertForMaskedLM (head on every token)": [],
        "devmode (masked positions only)": [],
    }
    for batch in batches[1:]:
        for name, step in zip(times, (full_step, ours_step), strict=True):
            start = time.perf_counter()
            step(batch)
            times[name].append(time.perf_counter() - start)
    print(f"{'side':<52} {'s/step':>8} {'texts/s':>8}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:<52} {median:>8.3f} {args.batch_size / median:>8.1f}")


if __name__ == "__main__":
    main()
