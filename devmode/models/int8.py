"""A model's scoring card: how it scores on this kind of CPU (int8, int8 with some layers in
fp32, bf16 or fp32), chosen by ``quantized.py`` when the form gives the full model's labels
often enough and runs faster; read without loading torch (the registry shows it).

    describe(int8_card("devmode_files/models/run-3"))   # 'int8 (same label as full precision on 99.6% ...)'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from devmode.environment import cpu_description

INT8_FILE = "model.int8.onnx"
INT8_CARD = "int8.json"
# The share of a check set on which the int8 model must give the full model's label.
MIN_AGREEMENT = 0.99
# Texts in a check set, at most (a model's test and validation texts, else texts it scores).
CHECK_TEXTS = 2000


def available() -> bool:
    """Whether ONNX Runtime is installed (it is in requirements.txt; a trimmed install may not
    have it, and then scoring stays in full precision)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def int8_card(model_dir: str | Path) -> dict[str, Any] | None:
    """What the last check found: ``{"agreement", "check_texts", "used", ...}``, or None."""
    path = Path(model_dir) / INT8_CARD
    return json.loads(path.read_text()) if path.is_file() else None


def made_here(card: dict[str, Any]) -> bool:
    """Whether the card's choice was measured on this kind of CPU (a card from before the CPU
    was recorded counts as made here)."""
    return card.get("cpu", cpu_description()) == cpu_description()


def describe(card: dict[str, Any] | None) -> str:
    """'int8 (same label on 99.6% of 2,000 texts)', for the registry and the CLI."""
    if card is None:
        return "not checked yet"
    if card.get("error"):
        return f"full precision (int8 could not be built: {card['error']})"
    chosen = card.get("precision") or ("int8" if card["used"] else "fp32")
    if chosen != "fp32":
        share = f"{card['agreement']:.1%} of {card['check_texts']:,} texts"
        return f"{chosen} (same label as full precision on {share})"
    tried = [c for c in card.get("candidates", []) if c["precision"].startswith("int8")]
    best = max([c["agreement"] for c in tried] or [card["agreement"]])
    share = f"{best:.1%} of {card['check_texts']:,} texts"
    if best >= MIN_AGREEMENT:
        return f"full precision (the fastest here; int8 agreed on {share})"
    return f"full precision (int8 agreed on only {share}; needs {MIN_AGREEMENT:.0%})"


def write_card(model_dir: str | Path, card: dict[str, Any]) -> None:
    """Write the card whole, then rename it into place: a reader never sees half of one."""
    folder = Path(model_dir)
    partial = folder / f"{INT8_CARD}.{os.getpid()}.partial"
    partial.write_text(json.dumps(card, indent=2))
    os.replace(partial, folder / INT8_CARD)


def record_failure(model_dir: str | Path, error: str) -> None:
    """A build that failed: kept on the card, so it is not tried on every scoring."""
    write_card(model_dir, {"agreement": 0.0, "check_texts": 0, "used": False, "error": error})
