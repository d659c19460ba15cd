"""What a benchmark prints with its figures: the CPU model and the vector flags it has (the
machines change from week to week: AVX2 only, AVX-512 BF16, AMX)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu() -> str:
    model, flags = platform.processor() or "?", ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next(
            line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line
        )
        found = next(
            line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")
        )
        flags = " ".join(f for f in found if f.startswith(("avx", "amx")))
    except (OSError, StopIteration):
        pass
    return f"{model} ({flags or 'no AVX flags read'})"
