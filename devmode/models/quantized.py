"""int8 scoring on the CPU: a devmode classifier exported to ONNX with its weights quantised to
int8 by ONNX Runtime's dynamic quantisation, used in place of the full-precision model only
when the two give the same label on at least ``MIN_AGREEMENT`` of a check set.

    card = build_int8(model_dir, check_texts)   # model.int8.onnx + int8.json beside the model
    card["agreement"]                           # 0.996: shown with the model in the registry
    scorers.load_scorer(model_dir)              # on a CPU: the int8 scorer when the card says so

Why ONNX Runtime: torch's own dynamic quantisation (``torch.ao.quantization``) is deprecated,
and ONNX Runtime's int8 kernels are the usual CPU path. Measured on 2 cores, the 9,958 Benzinga
headlines, a phrasebank sentiment model (95% test accuracy): fp32 torch 161 texts/s; int8
per-tensor 332/s with the same label on 95.1%; int8 per-channel (used here) 309/s, 97.6%;
keeping the first and last layers in fp32, 250/s, 98.4%; static QDQ quantisation (calibrated)
81%. ONNX Runtime's transformer optimiser (fused attention) added no speed on top of int8.
So on that model the check keeps fp32; models whose labels sit further from their decision
boundaries pass it.
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

from devmode.environment import usable_cpus
from devmode.models.calibration import stored_temperature
from devmode.models.classifier import MODEL_CARD, load_tokenizer
from devmode.models.inference import CPU_TOKENS_PER_BATCH, Scorer, load_full
from devmode.models.int8 import (
    CHECK_TEXTS,
    INT8_FILE,
    MIN_AGREEMENT,
    available,
    int8_card,
    write_card,
)

# The ONNX opset of exported models (int8 and `models export --format onnx`).
ONNX_OPSET = 17


def build_int8(model_dir: str | Path, check_texts: list[str]) -> dict[str, Any]:
    """Export, quantise and check the model in ``model_dir``; write the int8 file and its card
    (each written whole, then renamed into place: a reader never sees half of one)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(model_dir)
    start = time.perf_counter()
    full = load_full(folder, device="cpu")  # a devmode or HF classifier
    model, tokenizer = full.model, full.tokenizer
    texts = [str(t) for t in check_texts if t][:CHECK_TEXTS] or ["The market opened."]
    suffix = f".{os.getpid()}.partial"
    exported = folder / f"model.fp32.onnx{suffix}"
    quantised = folder / f"{INT8_FILE}{suffix}"
    try:
        # the exporter's tracer warnings and the quantiser's advice are for their developers
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            onnx_file(model, tokenizer, exported, texts[:4])
            quantize_dynamic(
                str(exported), str(quantised), weight_type=QuantType.QInt8, per_channel=True
            )
        small = Int8Scorer(quantised, tokenizer, full.label_names, full.max_length)
        agreement = float(
            (
                full.score(texts).probabilities.argmax(1)
                == small.score(texts).probabilities.argmax(1)
            ).mean()
        )
        os.replace(quantised, folder / INT8_FILE)
    finally:
        exported.unlink(missing_ok=True)
        quantised.unlink(missing_ok=True)
    import onnxruntime

    result = {
        "agreement": agreement,
        "check_texts": len(texts),
        "min_agreement": MIN_AGREEMENT,
        "used": agreement >= MIN_AGREEMENT,
        "labels": full.label_names,
        "max_length_tokens": full.max_length,
        "seconds": round(time.perf_counter() - start, 1),
        "onnxruntime": onnxruntime.__version__,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_card(folder, result)
    return result


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
    """Whether scoring on this machine should build and check the int8 form first: a devmode
    or Hugging Face classifier, on a CPU, with ONNX Runtime installed and no check made yet."""
    folder = Path(model_dir)
    return (
        ((folder / MODEL_CARD).is_file() or (folder / "config.json").is_file())
        and int8_card(folder) is None
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
