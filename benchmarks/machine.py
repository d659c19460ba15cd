"""What a benchmark prints with its figures: the CPU model and the vector flags it has (the
machines change from week to week: AVX2 only, AVX-512 BF16, AMX)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devmode.environment import cpu_description  # noqa: E402


def cpu() -> str:
    return cpu_description()
