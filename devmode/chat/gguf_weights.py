"""A Llama-style model's config and float32 weights from a GGUF file, by transformers' names.

    config, weights = read_llama(path)        # a LlamaConfig and {"model.embed_tokens.weight": ...}
    decoder = LlamaDecoder.from_weights(config, weights, "auto")

The file is read and de-quantized by the ``gguf`` package (llama.cpp's own reader); this module
only renames the tensors and undoes the row order llama.cpp's converter gives the query and key
matrices. Why not ``AutoModelForCausalLM.from_pretrained(gguf_file=...)``, which does the same:
it parses every metadata field twice (once for the config, once for the tensors), maps the
tensor names once per submodule (hundreds of times) and builds a model only to take its state
dict. For the embedded SmolLM2-135M it took 15.45 s on 2 cores against 5.39 s here, with the same
tensors bit for bit (``benchmarks/chat_load.py`` measures both and compares every tensor;
``tests/chat/test_gguf_weights.py`` checks the same on small files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from devmode.chat.replies import BackendError


class UnreadableGGUF(BackendError):
    """The file is not a GGUF file of a Llama-style model this module can read."""


# GGUF's tensor names (llama.cpp's "standardized" names) -> transformers' names, per block.
BLOCK_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
MODEL_TENSORS = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# llama.<key> -> LlamaConfig's argument (the same table transformers' GGUF loader uses)
CONFIG_FIELDS = {
    "context_length": "max_position_embeddings",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "embedding_length": "hidden_size",
    "rope.dimension_count": "head_dim",
    "rope.freq_base": "rope_theta",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
}
TOKEN_IDS = ("bos", "eos", "padding")
MODEL_REQUIRED = ("token_embd.weight", "output_norm.weight")


def hf_name(gguf_name: str) -> str | None:
    """transformers' name of a GGUF tensor, or None for one a Llama does not have."""
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, block, part = stem.split(".", 2)
        return (
            f"model.layers.{block}.{BLOCK_TENSORS[part]}.{suffix}"
            if part in BLOCK_TENSORS
            else None
        )
    return f"{MODEL_TENSORS[stem]}.{suffix}" if stem in MODEL_TENSORS else None


def unpermute(weights: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of a query or key matrix (its rotary pairs are stored
    interleaved; transformers keeps them as two halves)."""
    half = weights.shape[0] // heads // 2
    return weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(2, 1).reshape(weights.shape)


def read_llama(path: str | Path):
    """The ``LlamaConfig`` and float32 weights (transformers' names) of a GGUF file."""
    from gguf import GGUFReader, GGUFValueType, dequantize
    from transformers import LlamaConfig

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as e:
        raise UnreadableGGUF(f"{Path(path).name} is not a readable GGUF file ({e}).") from e

    def field(key: str, default=None):
        """A scalar field's value (read from its parts: ``ReaderField.contents`` is newer than
        the oldest ``gguf`` devmode accepts)."""
        found = reader.fields.get(key)
        if found is None:
            return default
        part = found.parts[found.data[0]]
        return bytes(part).decode() if found.types[0] == GGUFValueType.STRING else part.tolist()[0]

    architecture = field("general.architecture")
    if architecture != "llama":
        raise UnreadableGGUF(
            f"{Path(path).name} holds a {architecture!r} model; devmode reads Llama-style GGUF "
            "files only. Serve other models through an OpenAI-compatible endpoint."
        )
    names = {tensor.name for tensor in reader.tensors}
    # what the decoder does not compute: it would run the file, wrongly
    unsupported = sorted(n for n in names if n.endswith(".bias") or n.startswith("rope_freqs"))
    scaling = field("llama.rope.scaling.type", "none")
    if scaling not in ("none", ""):
        unsupported.append(f"rope scaling {scaling!r}")
    blocks = field("llama.block_count", 0)
    required = {*MODEL_REQUIRED} | {
        f"blk.{i}.{part}.weight" for i in range(blocks) for part in BLOCK_TENSORS
    }
    missing = sorted(required - names) if blocks else ["llama.block_count"]
    problems = [f"it has {', '.join(unsupported[:3])}"] * bool(unsupported)
    problems += [f"it lacks {', '.join(missing[:3])}"] * bool(missing)
    if problems:
        raise UnreadableGGUF(
            f"{Path(path).name} is a Llama GGUF file devmode's decoder cannot run as it is: "
            f"{'; '.join(problems)}. Serve it through an OpenAI-compatible endpoint instead."
        )
    settings = {
        name: field(f"llama.{key}")
        for key, name in CONFIG_FIELDS.items()
        if f"llama.{key}" in reader.fields
    }
    if "vocab_size" not in settings:  # older files: the embedding table's rows
        embeddings = next(t for t in reader.tensors if t.name == "token_embd.weight")
        settings["vocab_size"] = int(embeddings.shape[-1])
    for token in TOKEN_IDS:
        value = field(f"tokenizer.ggml.{token}_token_id")
        if value is not None:
            settings[f"{'pad' if token == 'padding' else token}_token_id"] = value
    settings["tie_word_embeddings"] = "output.weight" not in names
    config = LlamaConfig(**settings)
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads or heads
    weights: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            continue  # e.g. rope_freqs: computed from the config instead
        array = dequantize(tensor.data, tensor.tensor_type)
        if ".attn_q." in tensor.name:
            array = unpermute(array, heads)
        elif ".attn_k." in tensor.name:
            array = unpermute(array, kv_heads)
        # a float32 tensor comes back as a read-only view of the file: copy that one
        weights[name] = torch.from_numpy(np.require(array, np.float32, ["C", "W"]))
    return config, weights


class SafetensorsWeights:
    """Weights that save as a Hugging Face folder's ``model.safetensors`` (for ``save_whole``)."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.weights, Path(folder) / "model.safetensors", metadata={"format": "pt"})
