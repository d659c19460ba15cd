"""The decoder's weight formats, their kernels, and the pick made at load time."""

import pytest
import torch
import torch.nn.functional as F

from devmode.chat import kernels
from devmode.chat.kernels import Int4Weight, Int8Weight, four_bit_exact, linear, pick_weights


def four_bit_matrix(rows: int = 32, width: int = 128, seed: int = 0) -> torch.Tensor:
    """What a Q4_1 GGUF file's weights look like de-quantized: per group of 32, a minimum plus
    a multiple (0-15) of a step, both from float16 as the file stores them."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 16, (rows, width // 32, 32), generator=generator)
    values[..., 0], values[..., 1] = 0, 15  # the quantizer maps each group's extremes there
    steps = (torch.rand(rows, width // 32, 1, generator=generator) * 0.02 + 0.001).half().float()
    lows = (torch.randn(rows, width // 32, 1, generator=generator) * 0.1).half().float()
    return (lows + values * steps).view(rows, width)


def test_int8_rows_round_trip_within_half_a_step():
    weight = torch.randn(16, 40)
    quantized = Int8Weight.quantize(weight, torch.float32)
    step = weight.abs().amax(1, keepdim=True) / 127
    assert quantized.values.dtype == torch.int8
    assert ((quantized.dense() - weight).abs() <= step / 2 + 1e-6).all()


def test_four_bit_weights_are_recognised_and_others_are_not():
    assert four_bit_exact(four_bit_matrix())
    assert not four_bit_exact(torch.randn(32, 128))  # a trained model's float weights
    assert not four_bit_exact(four_bit_matrix() + torch.randn(32, 128) * 1e-3)
    assert not four_bit_exact(torch.randn(32, 40))  # rows that are not whole groups
    # the decoder asks once, as it quantizes: None where the weights are not 4-bit already
    assert Int4Weight.quantize(torch.randn(32, 128), torch.bfloat16, exact=True) is None
    assert Int4Weight.quantize(torch.randn(32, 40), torch.bfloat16, exact=True) is None
    if kernels.kernel_works("int4"):
        assert Int4Weight.quantize(four_bit_matrix(), torch.bfloat16, exact=True) is not None


@pytest.mark.skipif(not kernels.kernel_works("int4"), reason="no int4 kernel on this CPU")
def test_int4_keeps_four_bit_weights_up_to_the_rounding_of_the_scales():
    """A row times int4 weights made from 4-bit values is the float product, but for bf16:
    the activations' and the group scales' (about 3 significant digits)."""
    weight = four_bit_matrix(rows=48, width=128)
    matrix = Int4Weight.quantize(weight, torch.bfloat16)
    x = torch.randn(1, 128).bfloat16()
    exact = F.linear(x.float(), weight)
    int4 = linear(x, matrix).float()
    int8 = linear(x, Int8Weight.quantize(weight, torch.bfloat16)).float()
    assert (int4 - exact).abs().max() < 0.02 * exact.abs().max()
    # closer than int8 rows on such weights: the groups are the file's own
    assert (int4 - exact).abs().mean() < (int8 - exact).abs().mean()
    # a prompt's rows go through the int8 copy, expanded to dense
    rows = torch.randn(5, 128).bfloat16()
    assert torch.equal(linear(rows, matrix), F.linear(rows, matrix.rows.dense()))


def test_int4_refuses_shapes_its_kernel_cannot_take():
    assert Int4Weight.fits(torch.zeros(48, 64))
    assert not Int4Weight.fits(torch.zeros(50, 64))  # rows: a multiple of 16
    assert not Int4Weight.fits(torch.zeros(48, 40))  # columns: whole groups of 32


def test_the_pick_times_each_candidate_and_keeps_the_fastest_or_fewer_bytes_near_it(
    monkeypatch,
):
    monkeypatch.setattr(kernels, "candidate_formats", lambda device, four_bit: ["int8", "fp32"])
    fmt, timings = pick_weights(256, 128, torch.device("cpu"), True)
    assert set(timings) == {"int8", "fp32"} and all(t > 0 for t in timings.values())
    assert timings[fmt] <= 1.1 * min(timings.values())
    fake = {"int8": 1.2, "fp32": 1.0}  # within 25%: the one with fewer bytes
    monkeypatch.setattr(kernels, "time_row_product", lambda m, w, d: fake[_format(m)] / 1000)
    assert pick_weights(256, 128, torch.device("cpu"), True) == ("int8", fake)
    fake["int8"] = 1.3
    assert pick_weights(256, 128, torch.device("cpu"), True)[0] == "fp32"


def _format(matrix) -> str:
    return "int8" if isinstance(matrix, Int8Weight) else "fp32"


def test_candidates_follow_what_the_cpu_runs_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: False)
    assert kernels.candidate_formats(cpu, four_bit=True) == ["fp32"]  # emulated bf16 is slower
    assert kernels.candidate_formats(torch.device("cuda"), four_bit=True) == ["bf16"]
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: True)
    assert kernels.candidate_formats(cpu, four_bit=True) == ["int4", "int8", "bf16", "fp32"]
    # int4 only for weights that are 4-bit already: elsewhere it would lose precision
    assert kernels.candidate_formats(cpu, four_bit=False) == ["int8", "bf16", "fp32"]
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: fmt != "int4")
    assert kernels.candidate_formats(cpu, four_bit=True) == ["int8", "bf16", "fp32"]
    # int4 layers keep an int8 output layer: without the int8 kernel, neither
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: fmt != "int8")
    assert kernels.candidate_formats(cpu, four_bit=True) == ["bf16", "fp32"]


def test_a_matrix_made_for_timing_multiplies_like_its_format():
    for fmt in kernels.WEIGHT_FORMATS:
        if not kernels.kernel_works(fmt):
            continue
        dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
        matrix = kernels.filled_matrix(fmt, 64, 128)
        assert linear(torch.ones(1, 128, dtype=dtype), matrix).shape == (1, 64), fmt
