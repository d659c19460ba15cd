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
    # a prompt's rows go through the int8 copy, as a dense product
    rows = torch.randn(5, 128).bfloat16()
    expected = F.linear(rows.float(), matrix.rows.dense(torch.float32))
    torch.testing.assert_close(linear(rows, matrix).float(), expected, rtol=0.02, atol=0.02)


def test_int4_refuses_shapes_its_kernel_cannot_take():
    assert Int4Weight.fits(torch.zeros(48, 64))
    assert not Int4Weight.fits(torch.zeros(50, 64))  # rows: a multiple of 16
    assert not Int4Weight.fits(torch.zeros(48, 40))  # columns: whole groups of 32


LAYER = [(96, 64), (64, 64), (256, 64), (64, 128)]  # a small layer's matrices


def test_the_pick_estimates_a_token_and_keeps_the_fastest_or_fewer_bytes_near_it(monkeypatch):
    monkeypatch.setattr(kernels, "candidate_formats", lambda device, four_bit: ["int8", "fp32"])
    monkeypatch.setattr(kernels, "head_format", lambda fmt, shape: fmt)
    fmt, timings = pick_weights(LAYER, 3, (256, 64), torch.device("cpu"), True)
    assert set(timings) == {"int8", "fp32"} and all(t > 0 for t in timings.values())
    # the estimate: the layers' products times the number of layers, plus the output layer's
    layer_ms, head_ms = {"int8": 2.0, "fp32": 2.0}, {"int8": 4.0, "fp32": 1.0}

    def fake(fmt, layer_shapes, layers, head, head_fmt):
        assert layer_shapes == LAYER and layers == 3 and head == (256, 64) and head_fmt == fmt
        return layer_ms[fmt] / 1000, head_ms[fmt] / 1000

    monkeypatch.setattr(kernels, "time_token_products", fake)
    fmt, timings = pick_weights(LAYER, 3, (256, 64), torch.device("cpu"), True)
    assert timings == pytest.approx({"int8": 10.0, "fp32": 7.0})
    assert fmt == "fp32"  # int8 is 43% slower: fewer bytes do not make up for that
    head_ms["int8"] = 2.0  # 8 ms, within 25% of 7: the one with fewer bytes
    assert pick_weights(LAYER, 3, (256, 64), torch.device("cpu"), True)[0] == "int8"


def test_the_output_layer_is_timed_in_the_format_it_is_kept_in(monkeypatch):
    """int4 layers keep an output layer shortlisted by 4 bits, recomputed from int8: the
    estimate for int4 counts that output layer's time, not a 4-bit one's."""
    monkeypatch.setattr(kernels, "candidate_formats", lambda device, four_bit: ["int4", "fp32"])
    monkeypatch.setattr(
        kernels, "head_format", lambda fmt, shape: {"int4": "shortlist"}.get(fmt, fmt)
    )
    timed = []

    def fake(fmt, layer_shapes, layers, head, head_fmt):
        timed.append((fmt, head_fmt))
        return 0.001, {"shortlist": 0.004}.get(head_fmt, 0.001)

    monkeypatch.setattr(kernels, "time_token_products", fake)
    _, timings = pick_weights(LAYER, 2, (256, 64), torch.device("cpu"), True)
    assert timed == [("int4", "shortlist"), ("fp32", "fp32")]  # one timing each, in order
    assert timings == pytest.approx({"int4": 6.0, "fp32": 3.0})


def test_the_layers_are_timed_from_memory_over_copies_that_outgrow_the_cache(monkeypatch):
    made = []
    real = kernels.filled_matrix

    def counting(fmt, rows, width):
        made.append((rows, width))
        return real(fmt, rows, width)

    monkeypatch.setattr(kernels, "filled_matrix", counting)
    layer_bytes = sum(rows * width * 4 for rows, width in LAYER)  # float32
    monkeypatch.setattr(kernels, "last_level_cache_bytes", lambda: 3 * layer_bytes)
    layer_s, head_s = kernels.time_token_products("fp32", LAYER, 30, (512, 64), "fp32")
    assert made.count(LAYER[2]) == 6  # twice the cache: six copies of the layer
    assert 0 < layer_s < 1 and 0 < head_s < 1
    made.clear()
    kernels.time_token_products("fp32", LAYER, 4, (512, 64), "fp32")
    assert made.count(LAYER[2]) == 4  # never more copies than the model has layers


@pytest.mark.skipif(not kernels.kernel_works("int4"), reason="no int4 kernel on this CPU")
def test_a_shape_int4_does_not_take_is_timed_as_the_int8_the_decoder_keeps(monkeypatch):
    made = []
    real = kernels.filled_matrix

    def recording(fmt, rows, width):
        made.append((fmt, rows, width))
        return real(fmt, rows, width)

    monkeypatch.setattr(kernels, "filled_matrix", recording)
    shapes = [(64, 64), (64, 96 + 8)]  # columns that are not whole groups of 32
    kernels.time_token_products("int4", shapes, 1, (512, 64), "shortlist")
    assert made[:2] == [("int4", 64, 64), ("int8", 64, 104)]
    assert made[2] == ("shortlist", 512, 64)  # the output layer (its int8 part made inside)


def test_candidates_are_what_runs_here(monkeypatch):
    """The quantized kernels take a bf16 copy of the decoder's float32 row: they are candidates
    whether or not bf16 products are native; bf16 weights only where they are."""
    cpu = torch.device("cpu")
    assert kernels.candidate_formats(torch.device("cuda"), four_bit=True) == ["bf16"]
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: True)
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: True)
    assert kernels.candidate_formats(cpu, four_bit=True) == ["int4", "int8", "bf16", "fp32"]
    # int4 only for weights that are 4-bit already: elsewhere it would lose precision
    assert kernels.candidate_formats(cpu, four_bit=False) == ["int8", "bf16", "fp32"]
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: False)
    assert kernels.candidate_formats(cpu, four_bit=True) == ["int4", "int8", "fp32"]
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: fmt != "int4")
    assert kernels.candidate_formats(cpu, four_bit=True) == ["int8", "bf16", "fp32"]
    # int4 keeps int8 matrices: without the int8 kernel, neither
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: fmt != "int8")
    assert kernels.candidate_formats(cpu, four_bit=True) == ["bf16", "fp32"]
    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: False)
    assert kernels.candidate_formats(cpu, four_bit=True) == ["fp32"]


def test_quantized_layers_keep_a_shortlisted_output_layer_where_it_fits(monkeypatch):
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: True)
    assert kernels.head_format("int4", (49152, 576)) == "shortlist"
    assert kernels.head_format("int8", (49152, 576)) == "shortlist"
    assert kernels.head_format("bf16", (49152, 576)) == "bf16"
    assert kernels.head_format("int4", (97, 576)) == "int8"  # rows: not a multiple of 16
    assert kernels.head_format("int8", (96, 48)) == "int8"  # columns: not whole groups of 32
    monkeypatch.setattr(kernels, "kernel_works", lambda fmt, dtype=None: fmt != "int4")
    assert kernels.head_format("int8", (49152, 576)) == "int8"


@pytest.mark.skipif(not kernels.kernel_works("int4"), reason="no int4 kernel on this CPU")
def test_a_shortlisted_output_layer_gives_the_int8_products_where_they_count():
    """The shortlist's logits are the int8 matrix's in float32, and its top token is int8's, on
    every one of 200 random rows; the rest are the 4-bit copy's, close to them."""
    torch.manual_seed(3)
    weight = torch.randn(512, 64) * 0.05
    head = kernels.ShortlistWeight.quantize(weight, torch.bfloat16)
    int8 = Int8Weight.quantize(weight, torch.bfloat16)
    assert torch.equal(head.scan.rows.values, int8.values) and head.dtype == torch.bfloat16
    for _ in range(200):
        x = torch.randn(1, 64).bfloat16()
        found = linear(x, head)
        exact = F.linear(x.float(), int8.values.float()) * int8.scales.float()
        assert found.dtype == torch.float32
        assert int(found.argmax()) == int(exact.argmax())
        top = exact[0].topk(8).indices  # the likeliest are among the recomputed
        torch.testing.assert_close(found[0, top], exact[0, top], rtol=1e-5, atol=1e-5)
        assert (found - exact).abs().max() < 0.25 * exact.abs().max()  # 4 bits: coarse
    # a prompt's rows: a dense product with the int8 matrix
    rows = torch.randn(5, 64)
    torch.testing.assert_close(
        linear(rows, head, torch.float32), F.linear(rows, int8.dense(torch.float32))
    )


def test_linear_answers_in_the_dtype_the_product_ran_in():
    weight = torch.randn(48, 64)
    x = torch.randn(1, 64)
    if kernels.kernel_works("int8"):
        assert linear(x, Int8Weight.quantize(weight, torch.bfloat16)).dtype == torch.bfloat16
    assert linear(x, weight.bfloat16()).dtype == torch.bfloat16
    # a prompt's rows: in the dtype asked for, the matrix expanded or converted to it
    rows = torch.randn(7, 64)
    int8 = Int8Weight.quantize(weight, torch.bfloat16)
    for matrix, dense in (
        (weight.bfloat16(), weight.bfloat16().float()),
        (int8, int8.dense(torch.float32)),
    ):
        found = linear(rows, matrix, torch.float32)
        assert found.dtype == torch.float32
        torch.testing.assert_close(found, F.linear(rows, dense.float()))


def test_a_matrix_made_for_timing_multiplies_like_its_format():
    for fmt in kernels.WEIGHT_FORMATS:
        if not kernels.kernel_works("int4" if fmt == "shortlist" else fmt):
            continue
        matrix = kernels.filled_matrix(fmt, 64, 128)
        found = linear(torch.ones(1, 128), matrix)  # float32 activations, as the decoder's
        assert found.shape == (1, 64), fmt
        assert kernels.matrix_bytes(matrix) > 0
