"""The lean decoder computes what transformers' LlamaForCausalLM computes."""

import pytest
import torch

from devmode.chat import kernels
from devmode.chat.decoder import (
    PRECISIONS,
    Cache,
    LlamaDecoder,
    Sampling,
    UnsupportedModel,
    attend_cached,
    attend_sdpa,
    sampling_logits,
)
from devmode.chat.kernels import Int4Weight


def random_llama(seed: int = 0, **config):
    """A random 2-layer LlamaForCausalLM, in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, **config)).eval()


def save_llama(path, seed: int = 0, **config):
    """A random Llama saved as a Hugging Face folder; returns the model."""
    model = random_llama(seed, **config)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama with grouped-query attention, saved as a Hugging Face folder."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = save_llama(
        path,
        vocab_size=97,
        hidden_size=48,
        intermediate_size=96,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        rope_theta=5000.0,
    )
    return path, model


def test_logits_match_transformers_for_the_prompt_and_each_new_token(tiny_llama):
    path, reference = tiny_llama
    decoder = LlamaDecoder.from_pretrained(path)
    ids = [5, 17, 3, 88, 41, 9, 60]
    cache = decoder.new_cache(len(ids) + 4)
    with torch.inference_mode():
        logits = decoder.forward(torch.tensor([ids]), 0, cache)
        for _ in range(4):
            expected = reference(torch.tensor([ids])).logits[0, -1]
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
            token = int(logits.argmax())
            logits = decoder.forward(torch.tensor([[token]]), len(ids), cache)
            ids.append(token)


def test_greedy_generation_matches_generate(tiny_llama):
    path, reference = tiny_llama
    decoder = LlamaDecoder.from_pretrained(path)
    prompt = [1, 2, 3, 4, 5]
    ours = list(decoder.generate(prompt, 12))
    theirs = reference.generate(
        torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None
    )[0, len(prompt) :].tolist()
    assert ours == theirs


def test_generation_stops_at_a_stop_token_or_when_asked(tiny_llama):
    path, _ = tiny_llama
    decoder = LlamaDecoder.from_pretrained(path)
    free = list(decoder.generate([1, 2, 3], 10))
    assert len(free) == 10
    assert list(decoder.generate([1, 2, 3], 10, stop_ids=[free[2]]))[-1] == free[2]
    asked = []
    tokens = list(
        decoder.generate([1, 2, 3], 10, should_stop=lambda: len(asked.append(1) or asked) >= 4)
    )
    assert len(tokens) == 4


def test_a_seed_makes_sampling_repeatable(tiny_llama):
    path, _ = tiny_llama
    decoder = LlamaDecoder.from_pretrained(path)
    sampling = Sampling(temperature=1.5, top_p=0.9, top_k=20, seed=7)
    first = list(decoder.generate([1, 2, 3], 15, sampling))
    assert first == list(decoder.generate([1, 2, 3], 15, sampling))
    assert first != list(decoder.generate([1, 2, 3], 15, Sampling(temperature=1.5, seed=8)))


@pytest.mark.parametrize("top_k,top_p", [(0, 0.8), (5, 1.0), (5, 0.5), (0, 0.05)])
def test_sampling_filters_as_transformers_warpers_do(top_k, top_p):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(1)
    logits = torch.randn(50) * 3
    ours = sampling_logits(logits, Sampling(temperature=0.7, top_k=top_k, top_p=top_p))
    theirs = TemperatureLogitsWarper(0.7)(None, logits[None].clone())
    if top_k:
        theirs = TopKLogitsWarper(top_k)(None, theirs)
    if top_p < 1:
        theirs = TopPLogitsWarper(top_p)(None, theirs)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs[0]))
    kept = ~torch.isinf(ours)
    torch.testing.assert_close(ours[kept], theirs[0][kept])


def test_other_architectures_are_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path
    )
    with pytest.raises(UnsupportedModel, match="model_type 'gpt2'"):
        LlamaDecoder.from_pretrained(tmp_path)


def assert_same_likeliest_tokens(exact: LlamaDecoder, lower: LlamaDecoder) -> None:
    """For a prompt (dense products) and for a new token (the one-row kernels), ``lower``'s
    logits are within 5% of ``exact``'s and rank the same three tokens first."""
    ids = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])
    exact_cache, lower_cache = exact.new_cache(8), lower.new_cache(8)
    with torch.inference_mode():
        pairs = [(exact.forward(ids, 0, exact_cache), lower.forward(ids, 0, lower_cache))]
        step = torch.tensor([[7]])
        pairs.append((exact.forward(step, 7, exact_cache), lower.forward(step, 7, lower_cache)))
    for a, b in pairs:
        assert torch.topk(a, 3).indices.tolist() == torch.topk(b, 3).indices.tolist()
        assert (a - b).abs().max() < 0.05 * a.abs().max()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precisions_stay_close_to_float32(tiny_llama, precision):
    """bf16 and int8 weights change the logits a little, not the model: for the prompt (dense
    products) and for a new token (the int8 kernel), the likeliest tokens are the same."""
    if precision == "int8" and not kernels.kernel_works("int8"):
        pytest.skip("no weight-only int8 kernel on this CPU")
    path, _ = tiny_llama
    exact = LlamaDecoder.from_pretrained(path, "fp32")
    lower = LlamaDecoder.from_pretrained(path, precision)
    assert lower.precision == precision
    assert_same_likeliest_tokens(exact, lower)


def test_on_the_cpu_activations_and_cache_are_float32_whatever_the_weights(tiny_llama):
    path, _ = tiny_llama
    for precision in ("fp32", "bf16", *(["int8"] if kernels.kernel_works("int8") else [])):
        decoder = LlamaDecoder.from_pretrained(path, precision)
        assert decoder.dtype == torch.float32 and decoder.new_cache(4).keys.dtype == torch.float32


def test_where_bf16_is_emulated_a_prompt_runs_in_float32(tiny_llama, monkeypatch):
    """torch's AVX2 bf16 products took six times float32's for a prompt's rows: there the
    quantized matrices are expanded to float32 for them, and the answers stay the model's."""
    from devmode.chat import decoder as module

    path, _ = tiny_llama
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: False)
    exact = LlamaDecoder.from_pretrained(path, "fp32")
    for precision in ("bf16", *(["int8"] if kernels.kernel_works("int8") else [])):
        lower = LlamaDecoder.from_pretrained(path, precision)
        assert lower.rows_dtype == torch.float32
        assert_same_likeliest_tokens(exact, lower)
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    assert LlamaDecoder.from_pretrained(path, "bf16").rows_dtype == torch.bfloat16


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_rms_norm_through_layer_norm_is_llamas_rms_norm(tiny_llama, scale):
    """LayerNorm of [x, -x] (mean 0, variance mean(x²)) is RMSNorm(x) in its first half: the
    same to float32's rounding, eps included (it decides at the small scale)."""
    path, _ = tiny_llama
    decoder = LlamaDecoder.from_pretrained(path)
    torch.manual_seed(5)
    weight = torch.randn(48)
    for shape in ((1, 48), (1, 9, 48)):
        x = torch.randn(shape) * scale
        expected = torch.nn.functional.rms_norm(x.double(), (48,), weight.double(), decoder.eps)
        found = decoder._rms_norm(x, torch.cat((weight, weight)))
        assert found.shape == x.shape
        torch.testing.assert_close(found.double(), expected, rtol=1e-5, atol=1e-6)
    # bf16 activations (a GPU's): RMSNorm in float32 as LlamaRMSNorm does, then the weight
    decoder.dtype = torch.bfloat16
    found = decoder._rms_norm(x.bfloat16(), torch.cat((weight, weight)).bfloat16())
    assert found.dtype == torch.bfloat16
    torch.testing.assert_close(found.double(), expected, rtol=2e-2, atol=2e-2 * scale)


def test_weights_taken_from_a_loaded_model_are_the_same_model(tiny_llama):
    path, reference = tiny_llama
    from_files = LlamaDecoder.from_pretrained(path)
    from_memory = LlamaDecoder.from_weights(reference.config, dict(reference.state_dict()))
    assert list(from_files.generate([1, 2, 3], 8)) == list(from_memory.generate([1, 2, 3], 8))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_attention_over_the_whole_cache_is_bit_for_bit_attention_over_what_is_written(dtype):
    """A new token attends over the whole preallocated cache (a fixed shape for the reply);
    the zeros past what is written must not change a single bit of the result."""
    torch.manual_seed(3)
    kv_heads, groups, head_dim, room = 3, 3, 64, 300
    for length in (1, 2, 17, 64, 65, 150, 299, 300):
        cache = Cache.allocate(1, kv_heads, groups, room, head_dim, dtype=dtype, device="cpu")
        keys = (torch.randn(kv_heads, length, head_dim) * 2).to(dtype)
        values = torch.randn(kv_heads, length, head_dim).to(dtype)
        cache.keys[0, :, :length], cache.values[0, :, :length] = keys, values
        queries = (torch.randn(kv_heads, groups, head_dim) * 2).to(dtype)
        scores = torch.bmm(queries, keys.transpose(1, 2)) * 0.125
        expected = torch.bmm(scores.float().softmax(-1).to(dtype), values).view(1, -1)
        assert torch.equal(attend_cached(queries, cache, 0, length, 0.125), expected), length


def test_the_room_left_in_the_cache_does_not_change_a_bit_of_the_logits(tmp_path):
    # head_dim 64, as real models have: bf16 products of this size go through oneDNN
    save_llama(
        tmp_path,
        seed=1,
        vocab_size=64,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
    )
    decoder = LlamaDecoder.from_pretrained(tmp_path, "bf16")
    ids = list(range(1, 40))
    runs = []
    for room in (3, 400):
        cache, logits = decoder.new_cache(len(ids) + room), []
        with torch.inference_mode():
            logits.append(decoder.forward(torch.tensor([ids]), 0, cache))
            for position in range(len(ids), len(ids) + 3):
                token = torch.tensor([[int(logits[-1].argmax())]])
                logits.append(decoder.forward(token, position, cache))
        runs.append(torch.stack(logits))
    assert torch.equal(runs[0], runs[1])


@pytest.fixture(scope="module")
def four_bit_llama():
    """A random Llama whose matrices hold 4-bit values in groups of 32, as the embedded GGUF
    file's do: its config and weights by transformers' names."""
    model = random_llama(
        2,
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    weights = dict(model.state_dict())
    for name, weight in weights.items():
        if weight.dim() == 2 and "embed" not in name:
            weights[name] = kernels.four_bit_dense(*kernels._four_bit(weight))
    return model.config, weights


@pytest.mark.skipif(not kernels.kernel_works("int4"), reason="no int4 kernel on this CPU")
def test_int4_weights_stay_close_to_float32(four_bit_llama):
    config, weights = four_bit_llama
    weights = {**weights, "model.layers.1.mlp.down_proj.weight": torch.randn(64, 128) * 0.02}
    exact = LlamaDecoder.from_weights(config, weights, "fp32")
    lower = LlamaDecoder.from_weights(config, weights, "int4")
    assert isinstance(lower.layers[0].gate_up, Int4Weight)
    # the output layer: int8, shortlisted by a 4-bit copy
    assert isinstance(lower.lm_head, kernels.ShortlistWeight)
    # a matrix that is not 4-bit already is not rounded to 4 bits: it stays int8
    assert isinstance(lower.layers[1].down, kernels.Int8Weight)
    assert_same_likeliest_tokens(exact, lower)


def test_auto_picks_the_weights_and_attention_by_timing_and_says_which(four_bit_llama):
    config, weights = four_bit_llama
    decoder = LlamaDecoder.from_weights(config, weights, "auto", attention="auto")
    assert decoder.precision in PRECISIONS[1:] and decoder.attention in ("products", "sdpa")
    assert set(decoder.picked["attention"]) == {"products", "sdpa"}
    candidates = kernels.candidate_formats(torch.device("cpu"), four_bit=True)
    assert decoder.precision in candidates
    if len(candidates) > 1:  # one candidate (no native bf16): nothing to time
        assert set(decoder.picked["weights"]) == set(candidates)
    line = decoder.describe()
    assert line == f"{decoder.precision} weights, {decoder.attention} attention (picked by timing)"
    assert "attention: products" in decoder.describe(timings=True)
    explicit = LlamaDecoder.from_weights(config, weights, "fp32", attention="sdpa")
    assert explicit.describe() == "fp32 weights, sdpa attention" and explicit.picked == {}
    attention_only = LlamaDecoder.from_weights(config, weights, "fp32", attention="auto")
    assert attention_only.describe().endswith("attention (attention picked by timing)")
    with pytest.raises(ValueError, match="attention must be one of"):
        LlamaDecoder.from_weights(config, weights, "fp32", attention="flash")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_sdpa_attention_computes_what_the_two_products_compute(dtype):
    torch.manual_seed(4)
    cache = Cache.allocate(1, 3, 3, 120, 64, dtype=dtype, device="cpu")
    cache.keys.normal_(), cache.values.normal_()
    queries = torch.randn(3, 3, 64).to(dtype)
    for length in (1, 37, 120):
        expected = attend_cached(queries, cache, 0, length, 0.125).float()
        found = attend_sdpa(queries, cache, 0, length, 0.125).float()
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(found, expected, rtol=tolerance, atol=tolerance)


def test_quantized_weights_are_refused_with_a_way_out_where_their_kernels_fail(
    four_bit_llama, monkeypatch
):
    from devmode.chat import decoder

    config, weights = four_bit_llama
    monkeypatch.setattr(decoder, "kernel_works", lambda fmt, dtype=None: False)
    for precision in ("int4", "int8"):
        with pytest.raises(UnsupportedModel, match=f"{precision} weights need .* Choose auto"):
            LlamaDecoder.from_weights(config, weights, precision)
