"""Domain adaptation: continue a base encoder's masked-language-model pre-training on texts the
person already has (Gururangan et al. 2020, "Don't Stop Pretraining"), so that fine-tuning
starts from an encoder that has read their kind of text.

    $ python -m devmode adapt headlines tweets --name news --epochs 2

    result = adapt(base_dir, texts, "adapted/news", epochs=2, on_progress=print)

all-MiniLM-L6-v2 ships no masked-word head, so a fresh one is made (transformers'
``AutoModelForMaskedLM`` makes it, its output layer tied to the word embeddings) and trained
with the encoder. Masking is BERT's (``DataCollatorForLanguageModeling``: 15% of tokens, of
which 80% become [MASK], 10% a random word, 10% stay). The head's vocabulary-wide output is
computed on the masked positions only, about a seventh of the tokens, as fairseq does: on
MiniLM that product costs as much per token as the whole encoder. Batches come from
length-sorted buckets, as in fine-tuning. The saved base is the encoder alone (pooler
included), in Hugging Face format: ``adapted:NAME`` in the registry (``models/adapted_bases.py``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devmode import jobs
from devmode.data import ingest
from devmode.db import utc_now
from devmode.environment import usable_cpus
from devmode.errors import DevmodeError
from devmode.models import adapted_bases
from devmode.models.adapted_bases import AdaptationNotPossible, AdaptSettings
from devmode.models.base_models import InvalidBaseModel, resolve_base_model

# Fewer distinct texts than this teach an encoder nothing (and are refused).
MIN_TEXTS = AdaptSettings.spec("max_texts").minimum
BATCH_SIZE = 32
MASK_PROBABILITY = 0.15
MAX_LENGTH_TOKENS = 128
WARMUP_FRACTION = 0.06
WEIGHT_DECAY = 0.01
LOG_EVERY_STEPS = 10
# The fresh head's own layers learn this many times faster than the encoder: one pass over 3,000
# headlines left a held-out masked-word loss of 7.09 nats at 20x against 7.48 at 1x (2026-12-07,
# AMD EPYC; docs/benchmarks.md).
HEAD_LR_SCALE = 20.0
# Texts kept out of training to measure the masked-word loss on at the end.
HELD_OUT_FRACTION, MAX_HELD_OUT = 0.05, 1_000


class AdaptationCancelled(DevmodeError):
    """A person cancelled the adaptation."""


@dataclass
class AdaptResult:
    status: str  # completed | cancelled
    steps: int
    texts: int
    held_out_loss: float | None  # masked-word cross-entropy on the held-out texts, at the end
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    seconds: float = 0.0


def collect_texts(db, datasets: list[str], max_texts: int) -> list[str]:
    """Distinct, non-blank texts of ``datasets`` (labels ignored), at most ``max_texts``, drawn
    from each dataset by its seeded shuffle; refused when there are fewer than ``MIN_TEXTS``."""
    import itertools

    from devmode.data.examples import is_blank
    from devmode.finetune.out_of_domain import sample_texts

    seen: dict[str, None] = {}
    drawn = [sample_texts(db, name, max_texts) for name in datasets]
    for text in itertools.chain.from_iterable(itertools.zip_longest(*drawn)):
        if text is not None and not is_blank(text):  # taken in turn: each dataset gets its share
            seen.setdefault(text.strip(), None)
    texts = list(seen)[:max_texts]
    if len(texts) < MIN_TEXTS:
        raise AdaptationNotPossible(
            f"Adaptation needs at least {MIN_TEXTS:,} distinct texts to learn from; "
            f"{', '.join(datasets)} hold{'s' if len(datasets) == 1 else ''} {len(texts):,}. "
            "Add a dataset with more text (the monitored headlines, a feed's history), or "
            "fine-tune from the base model as it is."
        )
    return texts


def adapt(
    base_model: str,
    texts: list[str],
    output_dir: str | Path,
    *,
    epochs: int = AdaptSettings.epochs,
    learning_rate: float = AdaptSettings.learning_rate,
    head_lr_scale: float = HEAD_LR_SCALE,
    seed: int = 42,
    on_progress: Callable[[int, int, float], None] = lambda step, total, loss: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> AdaptResult:
    """Continue ``base_model``'s masked-word pre-training on ``texts`` for ``epochs`` passes and
    save the encoder to ``output_dir`` (written under a temporary name, then renamed: complete
    or absent). ``on_progress(step, total_steps, loss)`` is called every ``LOG_EVERY_STEPS``."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling
    from transformers.utils import logging as hf_logging

    from devmode.finetune.training import bucketed_batches, seed_everything
    from devmode.models.classifier import WEIGHTS_DTYPE, load_tokenizer, quiet_transformers

    seed_everything(seed)
    torch.set_num_threads(usable_cpus())
    quiet_transformers()
    source = resolve_base_model(base_model)
    tokenizer = load_tokenizer(source)
    if tokenizer.mask_token is None:
        raise InvalidBaseModel(
            f"The tokenizer of {base_model} has no mask token, so masked-word training cannot "
            "run on it. Adapt a BERT-like base model (the embedded one has one)."
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh head's "newly initialized" report is expected
    try:
        model = AutoModelForMaskedLM.from_pretrained(source, dtype=WEIGHTS_DTYPE)
    except (OSError, ValueError) as e:
        raise InvalidBaseModel(
            f"Could not load {base_model} with a masked-word head: {e}. Expected a BERT-like "
            "Hugging Face model folder."
        ) from e
    finally:
        hf_logging.set_verbosity(verbosity)
    encoder, head = model.base_model, _head_of(model)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    held = max(1, min(MAX_HELD_OUT, round(HELD_OUT_FRACTION * len(texts))))
    ids = tokenizer(list(texts), truncation=True, max_length=MAX_LENGTH_TOKENS)["input_ids"]
    train_ids = [ids[i] for i in order[held:]]
    held_ids = [ids[i] for i in order[:held]]
    lengths = np.array([len(x) for x in train_ids])
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY)

    # the fresh head (all but its output layer, which is the word embeddings) learns faster
    own = {id(p) for p in encoder.parameters()}
    groups = {}
    for p in model.parameters():
        fresh = id(p) not in own
        groups.setdefault((fresh, p.ndim >= 2), []).append(p)
    optimizer = torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": WEIGHT_DECAY if decayed else 0.0,
                "lr_scale": head_lr_scale if fresh else 1.0,
            }
            for (fresh, decayed), params in groups.items()
        ],
        lr=learning_rate,
    )
    steps_per_epoch = math.ceil(len(train_ids) / BATCH_SIZE)
    total = steps_per_epoch * epochs
    warmup = max(1, int(WARMUP_FRACTION * total))

    def loss_of(batch) -> torch.Tensor:
        hidden = encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        masked = batch["labels"] != -100
        logits = head(hidden[masked])
        return F.cross_entropy(logits, batch["labels"][masked])

    result = AdaptResult("completed", 0, len(texts), None)
    start, step, window = time.perf_counter(), 0, []
    model.train()
    for epoch in range(epochs):
        for indices in bucketed_batches(lengths, BATCH_SIZE, seed, epoch):
            lr = learning_rate * min(
                (step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            batch = collator([{"input_ids": train_ids[i]} for i in indices])
            if not bool((batch["labels"] != -100).any()):
                continue  # no token of these short texts was masked: nothing to learn
            loss = loss_of(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(loss.item())
            if step % LOG_EVERY_STEPS == 0 or step == total:
                result.losses.append((step, float(np.mean(window))))
                on_progress(step, total, result.losses[-1][1])
                window = []
            if should_stop():
                result.status, result.steps = jobs.CANCELLED, step
                return result
    result.steps, result.seconds = step, time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        torch.manual_seed(seed)  # the same masks whatever happened before
        losses = [
            float(loss_of(collator([{"input_ids": x} for x in held_ids[i : i + BATCH_SIZE]])))
            for i in range(0, len(held_ids), BATCH_SIZE)
        ]
    result.held_out_loss = float(np.nanmean(losses)) if losses else None
    _save(source, encoder, tokenizer, Path(output_dir))
    return result


def _head_of(model):
    """The masked-word head: hidden vectors to vocabulary logits (BERT: ``cls``)."""
    for name in ("cls", "lm_head", "vocab_projector"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise InvalidBaseModel(
        f"{type(model).__name__} has no masked-word head devmode knows. Adapt a BERT-like base."
    )


def _save(source: str, encoder, tokenizer, output_dir: Path) -> None:
    """The adapted encoder as a whole base-model folder: the base's own architecture (its
    pooler kept as it was) with the adapted weights, and the tokenizer."""
    from transformers import AutoModel

    from devmode.models.classifier import WEIGHTS_DTYPE

    base = AutoModel.from_pretrained(source, dtype=WEIGHTS_DTYPE)
    outcome = base.load_state_dict(encoder.state_dict(), strict=False)
    if outcome.unexpected_keys:
        raise InvalidBaseModel(
            f"The adapted weights do not fit {type(base).__name__}: {outcome.unexpected_keys[:3]}."
        )
    tmp = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    base.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)


# ----------------------------------------------------------------------------------------------
# The job


def execute_adaptation(
    db_path: str | Path, adaptation_id: int, *, echo: Callable[[str], None] = lambda line: None
) -> str:
    """Run adaptation ``adaptation_id`` in this process (its worker, or the CLI in the
    foreground): read the texts, adapt, store the base. Returns the status."""
    kind = adapted_bases.KIND
    with jobs.claimed(db_path, kind, adaptation_id) as db:
        adaptation = adapted_bases.get_adaptation(db, adaptation_id)
        texts = collect_texts(db, adaptation.datasets, adaptation.max_texts)
        db[kind.table].update(adaptation_id, {"texts": len(texts), "done": 0})
        echo(
            f"Adapting {adaptation.base_model} on {len(texts):,} texts, {adaptation.epochs} passes"
        )
        stop = jobs.CancelPoll(db, kind, adaptation_id)

        def progress(step: int, total: int, loss: float) -> None:
            db[kind.table].update(
                adaptation_id, {"done": step, "total": total, "updated_at": utc_now()}
            )
            echo(f"step {step}/{total} masked-word loss {loss:.3f}")

        output = adapted_bases.folder(db_path, adaptation.name)
        result = adapt(
            adaptation.base_model,
            texts,
            output,
            epochs=adaptation.epochs,
            learning_rate=adaptation.learning_rate,
            on_progress=progress,
            should_stop=stop,
        )
        summary = {
            "texts": result.texts,
            "steps": result.steps,
            "held_out_loss": result.held_out_loss,
            "losses": result.losses,
            "seconds": result.seconds,
        }
        if result.status == jobs.CANCELLED:
            jobs.set_status(db, kind, adaptation_id, jobs.CANCELLED, pid=None)
            echo(f"Cancelled. Start it again: python -m devmode adapt --resume {adaptation.name}")
            return jobs.CANCELLED
        jobs.set_status(
            db,
            kind,
            adaptation_id,
            jobs.COMPLETED,
            pid=None,
            path=str(output),
            done=result.steps,
            summary=json.dumps(summary),
        )
    echo(
        f"Adapted {adaptation.reference}: held-out masked-word loss {result.held_out_loss:.3f} "
        f"after {result.steps} steps ({result.seconds:.0f} s). Fine-tune from it: "
        f"--base-model {adaptation.reference}"
    )
    return jobs.COMPLETED


def create(db, datasets: list[str], name: str, settings: AdaptSettings):
    """Queue an adaptation, refused (nothing stored) when its name, datasets, texts or base
    model cannot make one."""
    from devmode.models.classifier import load_tokenizer

    adapted_bases.check_name(name)
    tokenizer = load_tokenizer(resolve_base_model(settings.base_model))  # none: refused now
    if tokenizer.mask_token is None:
        raise InvalidBaseModel(
            f"The tokenizer of {settings.base_model} has no mask token, so masked-word training "
            "cannot run on it. Adapt a BERT-like base model (the embedded one has one)."
        )
    for dataset in datasets:
        ingest.get_dataset(db, dataset)  # NoSuchDataset names the ones there are
    collect_texts(
        db, datasets, settings.max_texts
    )  # too few texts: refused before anything is stored
    return adapted_bases.create_adaptation(db, name, datasets, settings)


def start_adaptation(db_path: str | Path, datasets: list[str], name: str, settings: AdaptSettings):
    """Create an adaptation and start its worker (``adapt --background``, the page)."""
    from devmode.db import open_db

    with open_db(db_path) as db, db.atomic():
        adaptation = create(db, datasets, name, settings)
    jobs.start(db_path, adapted_bases.KIND, adaptation.id)
    with open_db(db_path) as db:
        return adapted_bases.get_adaptation(db, adaptation.id)
