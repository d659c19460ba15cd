"""devmode's GGUF reader gives what transformers' GGUF loader gives, on small files written
here as llama.cpp's converter writes them (query and key rows permuted, matrices in Q4_1)."""

import numpy as np
import pytest
import torch

from devmode.chat.decoder import LlamaDecoder
from devmode.chat.gguf_weights import BLOCK_TENSORS, MODEL_TENSORS, UnreadableGGUF, read_llama

HEADS, KV_HEADS = 4, 2


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``permute`` (convert_hf_to_gguf.py): rotary halves to interleaved pairs."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=5000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a wrong name shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    return model


def write_gguf(path, model, quantized: bool, architecture: str = "llama"):
    """``model`` as llama.cpp writes it; matrices in Q4_1 when ``quantized``."""
    from gguf import GGMLQuantizationType, GGUFWriter, quantize

    to_gguf = {v: k for k, v in MODEL_TENSORS.items()}
    to_gguf.update({v: k for k, v in BLOCK_TENSORS.items()})
    c = model.config
    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_freq_base(5000.0)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_vocab_size(c.vocab_size)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    for name, tensor in model.state_dict().items():
        stem, _, suffix = name.rpartition(".")
        if stem.startswith("model.layers."):
            block, part = stem.removeprefix("model.layers.").split(".", 1)
            gguf_name = f"blk.{block}.{to_gguf[part]}.{suffix}"
        else:
            gguf_name = f"{to_gguf[stem]}.{suffix}"
        array = tensor.numpy()
        if name.endswith("q_proj.weight"):
            array = permute(array, HEADS)
        elif name.endswith("k_proj.weight"):
            array = permute(array, KV_HEADS)
        if quantized and array.ndim == 2 and "embed" not in name:
            kind = GGMLQuantizationType.Q4_1
            writer.add_tensor(gguf_name, quantize(array, kind), raw_dtype=kind)
        else:
            writer.add_tensor(gguf_name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_float32_weights_come_back_as_the_model_had_them(tiny_llama, tmp_path):
    config, weights = read_llama(write_gguf(tmp_path / "tiny.gguf", tiny_llama, quantized=False))
    expected = tiny_llama.state_dict()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    for field in ("hidden_size", "num_key_value_heads", "rms_norm_eps", "max_position_embeddings"):
        assert getattr(config, field) == pytest.approx(getattr(tiny_llama.config, field))
    assert not config.tie_word_embeddings and config.eos_token_id == 2
    ids = torch.tensor([[5, 17, 3, 88, 41, 9]])
    decoder = LlamaDecoder.from_weights(config, weights)
    with torch.inference_mode():
        logits = decoder.forward(ids, 0, decoder.new_cache(8))
        torch.testing.assert_close(logits, tiny_llama(ids).logits[0, -1], rtol=1e-4, atol=1e-4)


def test_quantized_weights_are_bit_for_bit_what_transformers_loads(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    path = write_gguf(tmp_path / "tiny-q4.gguf", tiny_llama, quantized=True)
    config, weights = read_llama(path)
    reference = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32
    )
    expected = reference.state_dict()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    assert not torch.equal(weights["lm_head.weight"], tiny_llama.lm_head.weight)  # 4-bit now
    for field in ("head_dim", "num_attention_heads", "vocab_size", "tie_word_embeddings"):
        assert getattr(config, field) == getattr(reference.config, field)


def test_a_tied_head_is_read_from_the_embeddings(tiny_llama, tmp_path):
    class Tied(torch.nn.Module):  # the same weights without lm_head, as a tied model saves
        config = tiny_llama.config

        def state_dict(self):
            return {k: v for k, v in tiny_llama.state_dict().items() if k != "lm_head.weight"}

    config, weights = read_llama(write_gguf(tmp_path / "tied.gguf", Tied(), quantized=False))
    assert config.tie_word_embeddings and "lm_head.weight" not in weights
    decoder = LlamaDecoder.from_weights(config, weights)
    assert torch.equal(decoder.lm_head, weights["model.embed_tokens.weight"])


def test_other_files_are_refused_with_what_to_do(tiny_llama, tmp_path):
    with pytest.raises(UnreadableGGUF, match="holds a 'gpt2' model; devmode reads Llama-style"):
        read_llama(write_gguf(tmp_path / "other.gguf", tiny_llama, False, architecture="gpt2"))
    for name, content in (("text.gguf", b"not a gguf file at all" * 10), ("empty.gguf", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UnreadableGGUF, match=f"{name} is not a readable GGUF file"):
            read_llama(tmp_path / name)


def test_what_the_decoder_cannot_run_is_refused_not_run_wrongly(tiny_llama, tmp_path):
    class Without(torch.nn.Module):  # the same weights less one block's matrix
        config = tiny_llama.config

        def state_dict(self):
            skip = "model.layers.1.mlp.up_proj.weight"
            return {k: v for k, v in tiny_llama.state_dict().items() if k != skip}

    with pytest.raises(UnreadableGGUF, match=r"it lacks blk\.1\.ffn_up\.weight"):
        read_llama(write_gguf(tmp_path / "short.gguf", Without(), quantized=False))

    class Biased(torch.nn.Module):  # a bias term the decoder does not add
        config = tiny_llama.config

        def state_dict(self):
            bias = {"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}
            return {**tiny_llama.state_dict(), **bias}

    with pytest.raises(UnreadableGGUF, match=r"it has blk\.0\.attn_q\.bias"):
        read_llama(write_gguf(tmp_path / "biased.gguf", Biased(), quantized=False))
