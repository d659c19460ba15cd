"""How the chat decoder's matrices are held and multiplied, and which way is picked at load time.

    fmt, timings = pick_weights(49152, 576, torch.device("cpu"), four_bit=True)
    # e.g. "int4", {"int4": 0.77, "int8": 1.78, "bf16": 3.16, "fp32": 10.0} (milliseconds)
    matrix = WEIGHT_FORMATS[fmt](weight, torch.bfloat16)  # then linear(x, matrix)

A new token reads every weight once, a matrix-vector product per matrix, so the bytes a
weight takes decide a token's speed wherever memory is the limit:

- ``Int4Weight``: groups of 32 weights along a row as 4-bit values with a scale and an offset
  per group, multiplied by torch's ``_weight_int4pack_mm_for_cpu`` (bf16 activations). That is
  the embedded GGUF file's own layout (Q4_1: 32 weights, a scale and a minimum), so its weights
  come back exactly, up to the bf16 rounding of each group's scale and offset.
- ``Int8Weight``: int8 rows with one scale per row, through ``_weight_int8pack_mm``.
- a plain tensor: bf16 or float32, through ``F.linear``.

Which is fastest is not a property of the flags alone: on 2026-12-07 an AMD EPYC with the
flags that gave 99-111 tokens/s a week before gave 47 (the products read memory at half the
speed). So ``pick_weights`` times one single-row product of the model's largest matrix (the
output layer, larger than the caches) in each format this CPU runs natively, and keeps the
fastest; within 25% of it, the one with the fewest bytes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from devmode.environment import cpu_has_native_bf16


@dataclass(frozen=True)
class Int8Weight:
    """A matrix kept as int8 rows with one scale per row (symmetric, weight-only)."""

    values: torch.Tensor  # int8, (out, in)
    scales: torch.Tensor  # (out,), in the activations' dtype

    @classmethod
    def quantize(cls, weight: torch.Tensor, dtype: torch.dtype) -> Int8Weight:
        w = weight.float()
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        values = (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
        return cls(values, scales.to(dtype))

    def dense(self) -> torch.Tensor:
        return self.values.to(self.scales.dtype) * self.scales[:, None]

    def row_product(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x, self.values, self.scales)


@dataclass(frozen=True)
class Int4Weight:
    """A matrix kept as 4-bit values in groups of ``GROUP`` along each row, with a scale and an
    offset per group (asymmetric, weight-only): weight = (value - 8) * scale + offset.

    A prompt's rows are multiplied by an int8 copy of the matrix (``rows``), expanded to dense:
    expanding 4-bit groups costs six times as much as expanding int8 rows (2.0 against 0.32 ms
    for the MLP's 3072 x 576 matrix, AMD EPYC, 2026-12-07), and a prompt's first token would
    wait for it. The copy costs a byte a weight (the embedded model: 106 MB)."""

    GROUP: ClassVar[int] = 32

    packed: torch.Tensor  # torch's own layout for _weight_int4pack_mm_for_cpu
    scales_offsets: torch.Tensor  # (in / GROUP, out, 2) in the activations' dtype
    rows: Int8Weight | None  # for a prompt's products (None in a matrix made for timing)

    @classmethod
    def quantize(
        cls, weight: torch.Tensor, dtype: torch.dtype, *, exact: bool = False
    ) -> Int4Weight | None:
        """``weight`` as int4; with ``exact``, None unless it is 4-bit already
        (``four_bit_exact``), found in the same pass over the matrix."""
        if exact and not cls.fits(weight):
            return None
        values, scales, offsets = _four_bit(weight)
        if exact and not _reproduces(weight, values, scales, offsets):
            return None
        scales_offsets = torch.stack((scales.t(), offsets.t()), dim=-1).contiguous().to(dtype)
        packed = torch._convert_weight_to_int4pack_for_cpu(values, 1)
        return cls(packed, scales_offsets, Int8Weight.quantize(weight, dtype))

    def dense(self) -> torch.Tensor:
        return self.rows.dense()

    def row_product(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(x, self.packed, self.GROUP, self.scales_offsets)

    @classmethod
    def fits(cls, weight: torch.Tensor) -> bool:
        """Whether torch's kernel takes the matrix's shape: rows of whole groups, and a number
        of rows that is a multiple of 16."""
        return weight.dim() == 2 and weight.shape[1] % cls.GROUP == 0 and weight.shape[0] % 16 == 0


def _four_bit(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values 0-15 (int32, ``weight``'s shape), and per group the scale and the offset of value
    8 (each (out, in / GROUP), float32): the group's minimum and maximum map to 0 and 15."""
    out, width = weight.shape
    groups = weight.float().reshape(out, width // Int4Weight.GROUP, Int4Weight.GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scales = ((high - low) / 15).clamp(min=1e-12)
    values = ((groups - low[..., None]) / scales[..., None]).round().clamp(0, 15)
    return values.to(torch.int32).view(out, width), scales, low + 8 * scales


def four_bit_exact(weight: torch.Tensor, tolerance: float = 1e-3) -> bool:
    """Whether ``weight`` already holds 4-bit values in groups of 32 (a Q4_1 GGUF file's weights
    de-quantized): re-quantized in float32, no weight moves by more than ``tolerance`` of its
    group's step. Then int4 weights lose only the rounding of the scales to bf16."""
    if not Int4Weight.fits(weight):
        return False
    return _reproduces(weight, *_four_bit(weight), tolerance)


def four_bit_dense(values, scales, offsets) -> torch.Tensor:
    """The float32 matrix ``_four_bit``'s values, scales and offsets stand for."""
    out, width = values.shape
    groups = values.view(out, -1, Int4Weight.GROUP) - 8
    return (groups * scales[..., None] + offsets[..., None]).view(out, width)


def _reproduces(weight, values, scales, offsets, tolerance: float = 1e-3) -> bool:
    error = (four_bit_dense(values, scales, offsets) - weight.float()).abs()
    error = error.view(*scales.shape, Int4Weight.GROUP)
    return bool((error.amax(-1) <= tolerance * scales).all())


Matrix = torch.Tensor | Int8Weight | Int4Weight

# How a decoder may hold its matrices, by name: a constructor from (weight, activation dtype).
WEIGHT_FORMATS = {
    "int4": Int4Weight.quantize,
    "int8": Int8Weight.quantize,
    "bf16": lambda weight, dtype: weight.to(torch.bfloat16),
    "fp32": lambda weight, dtype: weight.to(torch.float32),
}


def linear(x: torch.Tensor, weight: Matrix) -> torch.Tensor:
    """``x @ weight.T``. Quantized weights go through torch's weight-only kernel for a single
    row of shape (1, in) (a new token, and a prompt's last position before the output head) and
    are expanded to dense otherwise (a prompt's rows, where a dense product is faster)."""
    if isinstance(weight, torch.Tensor):
        return F.linear(x, weight)
    if x.dim() == 2 and x.shape[0] == 1:
        return weight.row_product(x)
    return F.linear(x, weight.dense())


@functools.cache
def kernel_works(fmt: str, dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether torch's (private) weight-only kernel for ``fmt`` exists here and agrees with a
    dense product on a random matrix; bf16 and fp32 always work. Asked once a process: every
    decoder asks when it is made, and the pick asks again."""
    if fmt in ("bf16", "fp32"):
        return True
    if dtype != torch.bfloat16:
        return False
    try:
        values = torch.randint(0, 16, (64, 128))
        values[:, 0 :: Int4Weight.GROUP], values[:, 1 :: Int4Weight.GROUP] = 0, 15
        dense = (values - 7.5) / 16  # 4-bit already: neither format rounds it much
        x = torch.randn(1, 128, dtype=dtype)
        fast = WEIGHT_FORMATS[fmt](dense, dtype).row_product(x).float()
        return bool(torch.allclose(fast, F.linear(x.float(), dense), rtol=0.05, atol=0.05))
    except (RuntimeError, AttributeError):
        return False


def candidate_formats(device: torch.device, four_bit: bool) -> list[str]:
    """The formats worth timing here, fewest bytes first: quantized ones only with native bf16
    (their kernels take bf16 activations), int4 only where the weights are 4-bit already
    (``four_bit``), bf16 only where it is native (emulated, it is slower than float32)."""
    if device.type != "cpu":
        return ["bf16"]
    if not cpu_has_native_bf16():
        return ["fp32"]
    if not kernel_works("int8"):  # int4 layers keep an int8 output layer
        return ["bf16", "fp32"]
    return [*(["int4"] if four_bit and kernel_works("int4") else []), "int8", "bf16", "fp32"]


def time_row_product(matrix: Matrix, width: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Seconds for one single-row product with ``matrix`` (``width`` columns): the fastest of
    ``repeats``."""
    x = torch.randn(1, width).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        linear(x, matrix)  # the first call sets the kernel up
        for _ in range(repeats):
            start = time.perf_counter()
            linear(x, matrix)
            best = min(best, time.perf_counter() - start)
    return best


def filled_matrix(fmt: str, rows: int, width: int) -> Matrix:
    """A matrix in ``fmt`` for timing, filled with one value and made directly in the format
    (random values would cost more to make than the timing itself; kernels do not look at
    the values)."""
    if fmt == "int8":
        values = torch.ones(rows, width, dtype=torch.int8)
        return Int8Weight(values, torch.full((rows,), 0.01, dtype=torch.bfloat16))
    if fmt == "int4":
        values = torch.full((rows, width), 9, dtype=torch.int32)
        scales = torch.full((width // Int4Weight.GROUP, rows, 2), 0.01, dtype=torch.bfloat16)
        return Int4Weight(torch._convert_weight_to_int4pack_for_cpu(values, 1), scales, None)
    return torch.full((rows, width), 0.01, dtype=torch.float32 if fmt == "fp32" else torch.bfloat16)


def pick_weights(
    rows: int, width: int, device: torch.device, four_bit: bool
) -> tuple[str, dict[str, float]]:
    """The weight format for this CPU and the milliseconds each candidate took for one row times
    a ``rows`` x ``width`` matrix (the model's output layer: the largest it has, larger
    than the caches, so the time is the memory's as a token's products are: a stand-in for
    each format's speed per byte). The fastest wins; a format with fewer bytes within 25% of
    it wins over it, so that a near tie does not flip from one start to the next (greedy
    answers would change with it). One candidate: no measurement."""
    candidates = candidate_formats(device, four_bit)
    if len(candidates) == 1:
        return candidates[0], {}
    timings = {}
    for fmt in candidates:
        dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
        timings[fmt] = time_row_product(filled_matrix(fmt, rows, width), width, dtype) * 1000
    fastest = min(timings.values())
    return next(f for f in candidates if timings[f] <= 1.25 * fastest), timings
