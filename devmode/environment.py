"""What the environment decides: the database file, the upload limit, where model files live
(and the converted chat model), how many CPUs this process may use and what those CPUs can do,
with the defaults devmode runs on out of the box.

DEVMODE_DB=team.db DEVMODE_MAX_UPLOAD_MB=200 python -m devmode datasets list
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# Where everything is kept: one SQLite file. Relative paths resolve against the working directory.
DEFAULT_DB_PATH = "devmode.db"
# Uploads above this size are refused before a byte is written (Streamlit's own cap is set to
# the same value in .streamlit/config.toml).
DEFAULT_MAX_UPLOAD_MB = 1024


def db_path() -> str:
    """The database file devmode uses: ``$DEVMODE_DB``, else ``devmode.db`` in the working directory."""
    return str(Path(os.environ.get("DEVMODE_DB") or DEFAULT_DB_PATH).expanduser().resolve())


def max_upload_bytes() -> int:
    """The upload size limit in bytes, from ``$DEVMODE_MAX_UPLOAD_MB`` (megabytes, may be fractional)."""
    raw = os.environ.get("DEVMODE_MAX_UPLOAD_MB")
    if not raw:
        return DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(
            f"DEVMODE_MAX_UPLOAD_MB must be a number of megabytes, found {raw!r}. "
            f"Set it to e.g. 200, or unset it for the default of {DEFAULT_MAX_UPLOAD_MB}."
        ) from None
    return int(megabytes * 1024 * 1024)


def files_dir(database_path: str | Path) -> Path:
    """Where model weights and checkpoints live: a folder beside the database file.

    ``devmode.db`` keeps its files in ``devmode_files/``, so copying the two together (or
    backing up both) moves everything.
    """
    database_path = Path(database_path).resolve()
    return database_path.parent / f"{database_path.stem}_files"


def chat_model_dir(database_path: str | Path) -> Path:
    """Where the embedded chat model's converted weights are kept (made on the first load, about
    15 s and 520 MB): ``$DEVMODE_CHAT_MODEL_DIR`` when set, so that several databases share one
    copy; else beside the database."""
    shared = os.environ.get("DEVMODE_CHAT_MODEL_DIR")
    if shared:
        return Path(shared).expanduser().resolve()
    return files_dir(database_path) / "llm"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (``taskset``, a container's cpuset), not the
    machine's count, so that a pinned job does not start more threads than it has cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_description() -> str:
    """'AMD EPYC (avx avx2 avx512f ... avx512_bf16)': the CPU's model and its vector flags, with
    every speed figure and in each model's scoring card (the machines change from week to
    week: AVX2 only, AVX-512 BF16, AMX)."""
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX) and torch may use
    it: not where torch is held to its AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``) or oneDNN
    is off in torch, as ``benchmarks/chat_speed.py --emulate avx2`` sets both (oneDNN's bf16
    products follow the CPU's flags, not that variable: with it alone, this answers no where
    oneDNN would still run them natively, the cautious side). Elsewhere bf16 is emulated and
    slower than float32."""
    if not re.search(r"\b(avx512_bf16|amx_bf16)\b", cpu_description()):
        return False
    import torch

    return "AVX512" in torch.backends.cpu.get_cpu_capability() and torch.backends.mkldnn.enabled


def last_level_cache_bytes(
    cpus: set[int] | None = None,
    folder: Path = Path("/sys/devices/system/cpu"),
    default: int = 32 << 20,
) -> int:
    """The last-level cache of the CPUs this process may run on (``cpus``, by default its
    affinity) as Linux reports it under ``folder``: the highest level's size, added up over the
    distinct caches of that level those CPUs sit on (an AMD EPYC has one L3 per group of
    cores); ``default`` where nothing can be read."""
    cpus = os.sched_getaffinity(0) if cpus is None else cpus
    caches: dict[tuple[int, str], int] = {}  # (level, the CPUs sharing it): bytes
    for cpu in cpus:
        for index in (folder / f"cpu{cpu}" / "cache").glob("index*"):
            try:
                level = int((index / "level").read_text())
                shared = (index / "shared_cpu_list").read_text().strip()
                text = (index / "size").read_text().strip().upper()
                size = int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(text[-1], 0)
            except (OSError, ValueError, IndexError):
                continue
            caches[level, shared] = size
    if not caches:
        return default
    top = max(level for level, _ in caches)
    return sum(size for (level, _), size in caches.items() if level == top)


def release_freed_memory() -> None:
    """Hand memory the process has freed back to the system (glibc's ``malloc_trim``); a no-op
    on other C libraries. Scoring batches of changing shapes fragments the heap: a loop scoring
    batches of 20 to 120 headlines grew from 490 to 680 MB over 160 batches without it and
    stayed at 495 MB with it (the watcher calls it after each pass that scored)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
