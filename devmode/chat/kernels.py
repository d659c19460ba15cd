"""How the chat decoder's matrices are held and multiplied, and which way is picked at load time.

    fmt, timings = pick_weights([(960, 576), (576, 576), (3072, 576), (576, 1536)], 30,
                                (49152, 576), torch.device("cpu"), four_bit=True)
    # e.g. "int4", {"int4": 6.1, "int8": 7.9, "bf16": 11.2, "fp32": 19.5} (ms of a token)
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
speed), and torch's AVX2 int4 kernel is slower than its int8 one where the AVX-512 one is not.
So ``pick_weights`` times one row through a layer's matrices and through the output layer in
each format whose kernels work here, and keeps the fastest; within 25% of it, the one with
the fewest bytes."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from devmode.environment import cpu_has_native_bf16, last_level_cache_bytes


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

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype the kernel takes."""
        return self.scales.dtype

    def dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        return self.values.to(dtype) * self.scales.to(dtype)[:, None]

    def row_product(self, x: torch.Tensor) -> torch.Tensor:
        """One row (1, in) through the kernel, in its dtype (bf16: ``x`` is converted)."""
        return torch._weight_int8pack_mm(x.to(self.dtype), self.values, self.scales)

    def rows_product(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Many rows through a dense product in ``dtype``: the int8 values converted (exact in
        bf16) and the scales applied to the result, one operation on the matrix fewer than
        expanding it (2.18 against 2.28 ms for 209 rows times 3072 x 576, AMD EPYC)."""
        return F.linear(x.to(dtype), self.values.to(dtype)) * self.scales.to(dtype)


@dataclass(frozen=True)
class Int4Weight:
    """A matrix kept as 4-bit values in groups of ``GROUP`` along each row, with a scale and an
    offset per group (asymmetric, weight-only): weight = (value - 8) * scale + offset.

    A prompt's rows are multiplied by an int8 copy of the matrix (``rows``) as a dense product:
    expanding 4-bit groups costs six times as much as converting int8 rows (2.0 against 0.32 ms
    for the MLP's 3072 x 576 matrix, AMD EPYC, 2026-12-07), and a prompt's first token would
    wait for it. The copy costs a byte a weight (the embedded model: 106 MB)."""

    GROUP: ClassVar[int] = 32

    packed: torch.Tensor  # torch's own layout for _weight_int4pack_mm_for_cpu
    scales_offsets: torch.Tensor  # (in / GROUP, out, 2) in the activations' dtype
    rows: Int8Weight | None  # for a prompt's products (None in a matrix made for timing)

    @classmethod
    def quantize(
        cls,
        weight: torch.Tensor,
        dtype: torch.dtype,
        *,
        exact: bool = False,
        rows: Int8Weight | None = None,
    ) -> Int4Weight | None:
        """``weight`` as int4; with ``exact``, None unless it is 4-bit already
        (``four_bit_exact``), found in the same pass over the matrix. ``rows``: the int8 copy
        for a prompt's rows, if one is made already."""
        if exact and not cls.fits(weight):
            return None
        values, scales, offsets = _four_bit(weight)
        if exact and not _reproduces(weight, values, scales, offsets):
            return None
        scales_offsets = torch.stack((scales.t(), offsets.t()), dim=-1).contiguous().to(dtype)
        packed = torch._convert_weight_to_int4pack_for_cpu(values, 1)
        return cls(packed, scales_offsets, rows or Int8Weight.quantize(weight, dtype))

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype the kernel takes."""
        return self.scales_offsets.dtype

    def row_product(self, x: torch.Tensor) -> torch.Tensor:
        """One row (1, in) through the kernel, in its dtype (bf16: ``x`` is converted)."""
        x = x.to(self.dtype)
        return torch._weight_int4pack_mm_for_cpu(x, self.packed, self.GROUP, self.scales_offsets)

    def rows_product(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.rows.rows_product(x, dtype)

    @classmethod
    def fits(cls, weight: torch.Tensor) -> bool:
        """Whether torch's kernel takes the matrix's shape (``fits_int4``)."""
        return weight.dim() == 2 and fits_int4(tuple(weight.shape))


def fits_int4(shape: tuple[int, ...]) -> bool:
    """Whether torch's int4 kernel takes a matrix of ``shape``: rows of whole groups of 32, and a
    number of rows that is a multiple of 16."""
    return shape[1] % Int4Weight.GROUP == 0 and shape[0] % 16 == 0


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


@dataclass(frozen=True)
class ShortlistWeight:
    """An output layer for one row in two steps: every product through a 4-bit copy (``scan``),
    which takes 0.4 of the int8 product's time for the embedded model's 49152 x 576, then the
    ``SHORTLIST`` highest recomputed from the int8 matrix (the scan's ``rows``) and the row as
    given (float32 in the decoder), in float32, and so returned: the int8 kernel's bf16 logits
    (steps of 0.125 at 20) tie more often.
    The others keep their 4-bit values: the distribution a token is sampled from changes only
    in its tail, and greedy picks from the recomputed ones unless a 4-bit value outside them
    beats the best of them. A 4-bit output layer alone would not do: its greedy agreement with
    float32 was 0.863, against int8's 0.967."""

    SHORTLIST: ClassVar[int] = 64

    scan: Int4Weight  # its ``rows`` are the int8 matrix

    @classmethod
    def quantize(cls, weight: torch.Tensor, dtype: torch.dtype) -> ShortlistWeight:
        return cls(Int4Weight.quantize(weight, dtype, rows=Int8Weight.quantize(weight, dtype)))

    @property
    def dtype(self) -> torch.dtype:
        return self.scan.dtype

    def rows_product(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.scan.rows_product(x, dtype)

    def row_product(self, x: torch.Tensor) -> torch.Tensor:
        products = self.scan.row_product(x)
        top = products[0].topk(min(self.SHORTLIST, products.shape[1])).indices
        exact = self.scan.rows
        recomputed = F.linear(x.float(), exact.values[top].float()) * exact.scales[top].float()
        return products.float().index_copy_(1, top, recomputed)


Matrix = torch.Tensor | Int8Weight | Int4Weight | ShortlistWeight
Shape = tuple[int, int]  # (rows, width) of a matrix

# How a decoder may hold its matrices, by name: a constructor from (weight, the kernel's
# activation dtype).
WEIGHT_FORMATS = {
    "int4": Int4Weight.quantize,
    "int8": Int8Weight.quantize,
    "shortlist": ShortlistWeight.quantize,  # an output layer's, not a user's choice
    "bf16": lambda weight, dtype: weight.to(torch.bfloat16),
    "fp32": lambda weight, dtype: weight.to(torch.float32),
}


def head_format(fmt: str, shape: Shape) -> str:
    """The format a decoder keeps an output layer of ``shape`` in when its layers are in
    ``fmt``: with quantized layers, int8 shortlisted by a 4-bit copy (``ShortlistWeight``)
    where torch's int4 kernel works and takes the shape, else int8 (the embedded file's output
    layer is 8-bit)."""
    if fmt not in ("int4", "int8"):
        return fmt
    return "shortlist" if fits_int4(shape) and kernel_works("int4") else "int8"


def linear(x: torch.Tensor, weight: Matrix, rows_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x @ weight.T``, in the dtype the product ran in (the caller's next operation promotes it
    back to its own: one conversion fewer). A single row of shape (1, in) (a new token, and a
    prompt's last position before the output head) goes through the matrix as it is held: a
    quantized one through torch's weight-only kernel, which takes ``weight.dtype`` (bf16)
    activations. More rows (a prompt's) go through a dense product in ``rows_dtype`` (by
    default the matrix's own), a quantized matrix converted to dense for it: faster for many
    rows, and in float32 where bf16 products are emulated (six times slower for a prompt's
    rows with torch's AVX2 kernels)."""
    if x.dim() == 2 and x.shape[0] == 1:
        if isinstance(weight, torch.Tensor):
            return F.linear(x.to(weight.dtype), weight)
        return weight.row_product(x)
    rows_dtype = rows_dtype or weight.dtype
    if isinstance(weight, torch.Tensor):
        return F.linear(x.to(rows_dtype), weight.to(rows_dtype))
    return weight.rows_product(x, rows_dtype)


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
    """The formats worth timing here, fewest bytes first: the quantized ones where torch's
    kernels work (they take a bf16 copy of the decoder's float32 row: cheap even where bf16 is
    emulated), int4 only where the weights are 4-bit already (``four_bit``), bf16 weights only
    where bf16 is native (elsewhere a prompt converts each matrix to float32: with the AVX2
    kernels, emulated, bf16's first token took 0.43 s against int4's 0.33). Off the CPU, bf16
    untimed."""
    if device.type != "cpu":
        return ["bf16"]
    bf16 = ["bf16"] if cpu_has_native_bf16() else []
    if not kernel_works("int8"):  # int4 keeps int8 matrices: the prompt's rows, the head's
        return [*bf16, "fp32"]
    return [*(["int4"] if four_bit and kernel_works("int4") else []), "int8", *bf16, "fp32"]


def filled_matrix(fmt: str, rows: int, width: int) -> Matrix:
    """A matrix in ``fmt`` for timing, filled with one value and made directly in the format
    (random values would cost more to make than the timing itself; kernels do not look at
    the values)."""
    if fmt == "int8":
        values = torch.ones(rows, width, dtype=torch.int8)
        return Int8Weight(values, torch.full((rows,), 0.01, dtype=torch.bfloat16))
    if fmt in ("int4", "shortlist"):
        values = torch.full((rows, width), 9, dtype=torch.int32)
        scales = torch.full((width // Int4Weight.GROUP, rows, 2), 0.01, dtype=torch.bfloat16)
        exact = filled_matrix("int8", rows, width) if fmt == "shortlist" else None
        packed = Int4Weight(torch._convert_weight_to_int4pack_for_cpu(values, 1), scales, exact)
        return ShortlistWeight(packed) if fmt == "shortlist" else packed
    return torch.full((rows, width), 0.01, dtype=torch.float32 if fmt == "fp32" else torch.bfloat16)


def matrix_bytes(matrix: Matrix) -> int:
    """The bytes a single-row product reads from ``matrix`` (a shortlist's: its 4-bit copy; the
    rows it recomputes are a few dozen)."""
    if isinstance(matrix, ShortlistWeight):
        return matrix_bytes(matrix.scan)
    if isinstance(matrix, Int8Weight):
        parts = (matrix.values, matrix.scales)
    elif isinstance(matrix, Int4Weight):
        parts = (matrix.packed, matrix.scales_offsets)
    else:
        parts = (matrix,)
    return sum(part.numel() * part.element_size() for part in parts)


def time_token_products(
    fmt: str, layer_shapes: list[Shape], layers: int, head: Shape, head_fmt: str, rounds: int = 3
) -> tuple[float, float]:
    """Seconds for one row through a layer's matrices (``layer_shapes``) in ``fmt`` and through
    the output layer (``head``) in ``head_fmt``, as a token reads them: from memory, not from
    the caches. The layer's matrices are timed over as many copies of them as hold twice the
    last-level cache (``layers`` at most), each copy once a round, the output layer after them;
    the best of ``rounds`` rounds. A shape int4 does not take is timed as int8, as the decoder
    keeps it."""

    def layer_matrices() -> list[Matrix]:
        return [
            filled_matrix("int8" if fmt == "int4" and not fits_int4(s) else fmt, *s)
            for s in layer_shapes
        ]

    layer = layer_matrices()
    copies = min(layers, -(-2 * last_level_cache_bytes() // sum(map(matrix_bytes, layer))))
    stack = [layer] + [layer_matrices() for _ in range(copies - 1)]
    output = filled_matrix(head_fmt, *head)
    rows = {width: torch.randn(1, width) for width in {shape[1] for shape in (*layer_shapes, head)}}
    best_layer = best_head = float("inf")
    with torch.inference_mode():
        for matrix, shape in zip(layer, layer_shapes, strict=True):  # sets each kernel up
            linear(rows[shape[1]], matrix)
        linear(rows[head[1]], output)
        for _ in range(rounds):
            start = time.perf_counter()
            for copy in stack:
                for matrix, shape in zip(copy, layer_shapes, strict=True):
                    linear(rows[shape[1]], matrix)
            middle = time.perf_counter()
            linear(rows[head[1]], output)
            best_layer = min(best_layer, (middle - start) / copies)
            best_head = min(best_head, time.perf_counter() - middle)
    return best_layer, best_head


def pick_weights(
    layer_shapes: list[Shape], layers: int, head: Shape, device: torch.device, four_bit: bool
) -> tuple[str, dict[str, float]]:
    """The weight format for this CPU, and each candidate's estimate of a new token's products
    in milliseconds: ``layers`` times one row through a layer's matrices (``layer_shapes``)
    plus one row through the output layer (``head``) in the format it is kept in
    (``head_format``), timed as a token reads them (``time_token_products``).

    Both parts count, and from memory: a layer's matrix timed alone stays in the caches, where
    int4 and int8 took the same time on AMD EPYC with AVX-512, while a token with int4 layers
    ran 1.5 times as fast as with int8; and torch's AVX2 int4 kernel took 1.7 times as long as
    its int8 one for a layer's matrix, where the AVX-512 one did not (2026-12-08).

    The fastest wins; a format with fewer bytes within 25% of it wins over it, so that a near
    tie does not flip from one start to the next (greedy answers would change with it). One
    candidate: no measurement."""
    candidates = candidate_formats(device, four_bit)
    if len(candidates) == 1:
        return candidates[0], {}
    timings = {}
    for fmt in candidates:
        layer_s, head_s = time_token_products(
            fmt, layer_shapes, layers, head, head_format(fmt, head)
        )
        timings[fmt] = (layers * layer_s + head_s) * 1000
    fastest = min(timings.values())
    return next(f for f in candidates if timings[f] <= 1.25 * fastest), timings
