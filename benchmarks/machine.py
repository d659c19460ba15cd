"""What a benchmark prints with its figures: the CPU model and the vector flags it has (the
machines change from week to week: AVX2 only, AVX-512 BF16, AMX)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devmode.environment import cpu_description  # noqa: E402


def cpu() -> str:
    return cpu_description()


# A CPU kind not lent this week, emulated on the one that is: the environment that holds torch
# and the libraries under it to the kind's kernels. The memory, the caches and the clock stay
# the host's, so a figure measured this way says how the kernels a kind gets compare here,
# not what that kind's machines reach; it is printed as emulated.
EMULATIONS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels: the AVX2 builds
        "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: no AVX-512, no AVX-512 BF16, no AMX
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's float32 products
    },
}


def emulate(kind: str | None) -> None:
    """In a process started with ``EMULATIONS[kind]`` in its environment: also switch oneDNN off
    in torch, which otherwise routes bf16 products to it wherever the CPU's flags (read directly,
    not from the variables above) have AVX-512 (on an AVX2 CPU torch computes them itself)."""
    if kind:
        import torch

        torch.backends.mkldnn.enabled = False


def cpu_line(kind: str | None = None) -> str:
    """``cpu()``, and the emulated kind if there is one."""
    if not kind:
        return cpu()
    held = ", ".join(f"{k}={v}" for k, v in EMULATIONS[kind].items())
    return f"{cpu()}, emulating {kind} only ({held}, oneDNN off in torch)"
