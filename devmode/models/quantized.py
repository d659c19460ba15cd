"""How a model scores on this CPU, chosen once per model and kind of CPU: fp32 torch, its int8
form on ONNX Runtime (dynamic quantisation, weights per channel; all layers, or with the
feed-forward outputs left in fp32), or bf16 autocast where the CPU has native bf16. Each is
timed on a check set; the fastest that gives fp32's label on at least ``MIN_AGREEMENT`` of it
and beats fp32 is kept (``INT8_FORMS``, ``build_int8``).

    card = build_int8(model_dir, check_texts)   # model.int8.onnx (if int8 won) + int8.json
    card["precision"]                           # "int8", "bf16", "fp32", ...: shown in the registry
    scorers.load_scorer(model_dir)              # on a CPU: the form the card chose

Why ONNX Runtime for int8: torch's own dynamic quantisation (``torch.ao.quantization``) is
deprecated, and ONNX Runtime's int8 kernels are the usual CPU path. Measured on 2 cores, the
9,958 Benzinga headlines, a phrasebank sentiment model (95% test accuracy): fp32 torch 161
texts/s; int8 per-tensor 332/s with the same label on 95.1%; int8 per-channel (used here)
309/s, 97.6%; static QDQ quantisation (calibrated) 81%. ONNX Runtime's transformer optimiser
added no speed (it does not fuse this export's attention). More in docs/benchmarks.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devmode.environment import cpu_description, cpu_has_native_bf16, usable_cpus
from devmode.models.calibration import stored_temperature
from devmode.models.classifier import MODEL_CARD, load_tokenizer
from devmode.models.inference import CPU_TOKENS_PER_BATCH, Scorer, load_full
from devmode.models.int8 import (
    CHECK_TEXTS,
    INT8_FILE,
    MIN_AGREEMENT,
    available,
    int8_card,
    made_here,
    write_card,
)

# The ONNX opset of exported models (int8 and `models export --format onnx`).
ONNX_OPSET = 17


# A part of the check set this large is held to the 99% rule on its own.
MIN_PART_TEXTS = 200
# The int8 forms tried, in order, with the matrix products each leaves in fp32: all in int8;
# then the feed-forward output of every layer (its 1,536 inputs make its rounding the largest)
# in fp32. On a PhraseBank model and 2,000 headlines (AVX-512 BF16, 2 cores) the first gave
# fp32's label on 98.1% at 2.6x fp32's speed, the second on 99.05% at 1.7x; the first and last
# layers in fp32 instead, 98.85% at 1.8x.
INT8_FORMS = (
    ("int8", lambda name: False),
    (
        "int8, feed-forward outputs in fp32",
        lambda name: "/output/dense/" in name and "/attention/" not in name,
    ),
)


def build_int8(
    model_dir: str | Path, check_texts: list[str] | dict[str, list[str]]
) -> dict[str, Any]:
    """Choose how the model in ``model_dir`` scores on this CPU: time fp32 and each candidate
    (the ``INT8_FORMS`` in ONNX Runtime until one passes, bf16 autocast where the CPU has native
    bf16) on the check texts, and keep the fastest that gives fp32's label on at least
    ``MIN_AGREEMENT`` of them, else fp32. ``check_texts`` in named parts (the model's own
    texts, the texts it is about to score: ``scorers.check_texts``) must keep that share in
    every part. Writes the chosen int8 file (if int8 won) and the card, each whole, then
    renamed into place: a reader never sees half of one."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(model_dir)
    start = time.perf_counter()
    full = load_full(folder, device="cpu")  # a devmode or HF classifier
    parts = check_texts if isinstance(check_texts, dict) else {"check": check_texts}
    part_of: list[str] = []
    texts: list[str] = []
    for name, part in parts.items():
        for text in [str(t) for t in part if t][: CHECK_TEXTS - len(texts)]:
            texts.append(text)
            part_of.append(name)
    if not texts:
        texts, part_of = ["The market opened."], ["check"]
    reference, fp32_speed = _timed(full, texts)
    masks = {name: np.array(part_of) == name for name in dict.fromkeys(part_of)}

    def compared(scorer: Scorer) -> dict[str, Any]:
        return _compared(scorer, texts, reference, masks)

    candidates: list[dict[str, Any]] = []
    suffix = f".{os.getpid()}.partial"
    exported = folder / f"model.fp32.onnx{suffix}"
    quantised = [folder / f"{INT8_FILE}.{i}{suffix}" for i in range(len(INT8_FORMS))]
    try:
        # the exporter's tracer warnings and the quantiser's advice are for their developers
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            onnx_file(full.model, full.tokenizer, exported, texts[:4])
            names = _matmul_names(exported)
            for (form, keep_fp32), path in zip(INT8_FORMS, quantised, strict=True):
                quantize_dynamic(
                    str(exported),
                    str(path),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    nodes_to_exclude=[n for n in names if keep_fp32(n)],
                )
                small = Int8Scorer(path, full.tokenizer, full.label_names, full.max_length)
                candidates.append({"precision": form, **compared(small)})
                if candidates[-1]["agreement"] >= MIN_AGREEMENT:
                    break
        if cpu_has_native_bf16():
            full.use_bf16, full.precision = True, "bf16"
            candidates.append({"precision": "bf16", **compared(full)})
        passing = [
            c
            for c in candidates
            if c["agreement"] >= MIN_AGREEMENT and c["texts_per_s"] > fp32_speed
        ]
        chosen = max(passing, key=lambda c: c["texts_per_s"]) if passing else None
        if chosen and chosen["precision"].startswith("int8"):
            index = [c["precision"] for c in candidates].index(chosen["precision"])
            os.replace(quantised[index], folder / INT8_FILE)
    finally:
        for path in (exported, *quantised):
            path.unlink(missing_ok=True)
    import onnxruntime

    result = {
        "precision": chosen["precision"] if chosen else "fp32",
        "agreement": chosen["agreement"] if chosen else 1.0,
        "check_texts": len(texts),
        "check_parts": {name: int(mask.sum()) for name, mask in masks.items()},
        "min_agreement": MIN_AGREEMENT,
        "used": bool(chosen and chosen["precision"].startswith("int8")),
        "fp32_texts_per_s": round(fp32_speed, 1),
        "candidates": candidates,
        "cpu": cpu_description(),
        "labels": full.label_names,
        "max_length_tokens": full.max_length,
        "seconds": round(time.perf_counter() - start, 1),
        "onnxruntime": onnxruntime.__version__,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_card(folder, result)
    return result


def _timed(scorer: Scorer, texts: list[str]) -> tuple[np.ndarray, float]:
    """The scorer's labels of ``texts`` (class ids) and its texts/s, after a warm-up."""
    scorer.score(texts[:32])
    begun = time.perf_counter()
    labels = scorer.score(texts).probabilities.argmax(1)
    return labels, len(texts) / max(time.perf_counter() - begun, 1e-9)


def _compared(
    scorer: Scorer, texts: list[str], reference: np.ndarray, masks: dict[str, np.ndarray]
) -> dict[str, Any]:
    """A form's speed and its agreement with fp32: in each part, and what the 99% rule reads:
    the lowest of the whole set's and each part's of at least ``MIN_PART_TEXTS`` texts."""
    labels, speed = _timed(scorer, texts)
    same = labels == reference
    by_part = {name: round(float(same[mask].mean()), 5) for name, mask in masks.items()}
    # a part too small to measure 1% (one flip in 40 rows is 2.5%) is judged with the others
    judged = [by_part[name] for name, mask in masks.items() if mask.sum() >= MIN_PART_TEXTS]
    return {
        "agreement": min([round(float(same.mean()), 5), *judged]),
        "agreement_by_part": by_part,
        "texts_per_s": round(speed, 1),
    }


def _matmul_names(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("MatMul", "Gemm")]


def onnx_file(model, tokenizer, path: Path, sample: list[str] | None = None) -> None:
    """``model`` ((ids, mask) -> logits) exported to ONNX at ``path``, any batch and length."""
    import torch

    inputs = tokenizer(
        sample or ["The market opened.", "Profit rose"], padding=True, return_tensors="pt"
    )
    # the exporter's tracer warnings are for its developers
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (inputs["input_ids"], inputs["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "rows", 1: "tokens"},
                "attention_mask": {0: "rows", 1: "tokens"},
                "logits": {0: "rows"},
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


@contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantiser logs advice through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def load_int8(model_dir: str | Path) -> Int8Scorer:
    """The int8 scorer of a model whose int8 form was built."""
    folder = Path(model_dir)
    card = int8_card(folder)
    tokenizer = load_tokenizer(folder)
    return Int8Scorer(
        folder / INT8_FILE,
        tokenizer,
        card["labels"],
        card["max_length_tokens"],
        stored_temperature(folder),
    )


def needs_check(model_dir: str | Path) -> bool:
    """Whether scoring on this machine should choose its precision first: a devmode or Hugging
    Face classifier, on a CPU, with ONNX Runtime installed, and no choice made yet on this kind
    of CPU (a card made on another CPU, say AVX2 only against AMX, is made again)."""
    folder = Path(model_dir)
    card = int8_card(folder)
    return (
        ((folder / MODEL_CARD).is_file() or (folder / "config.json").is_file())
        and (card is None or not made_here(card))
        and not torch.cuda.is_available()
        and available()
    )


class Int8Scorer(Scorer):
    """``Scorer`` over an int8 ONNX model: the same tokenising, length-sorted token-budget
    batches and results, on ONNX Runtime's CPU kernels."""

    precision = "int8"

    def __init__(
        self,
        path: str | Path,
        tokenizer,
        label_names: list[str],
        max_length: int,
        temperature: float = 1.0,
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = usable_cpus()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.model = None
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.device = torch.device("cpu")
        self.use_bf16 = False
        self.tokens_per_batch = CPU_TOKENS_PER_BATCH
        self.temperature = temperature

    def _probabilities(self, input_ids, attention_mask) -> np.ndarray:
        (logits,) = self.session.run(
            None,
            {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()},
        )
        logits = logits / self.temperature
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)
