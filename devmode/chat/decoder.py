"""A lean decoder for the embedded chat model: Llama's arithmetic (SmolLM2 is a Llama) written
out in plain tensor operations, with a preallocated key/value cache.

    decoder = LlamaDecoder.from_pretrained(folder, "auto", attention="auto")
    for token in decoder.generate(prompt_ids, 64, Sampling(temperature=0.7, seed=1)):
        ...                                  # token ids as they come; the caller decodes them

Why not ``model.generate()``: it spends most of a token on Python around the arithmetic (module
calls, cache objects, logits processors, a streamer thread): 17 tokens/s for SmolLM2-135M on
2 CPU cores. Here a layer is about fifteen tensor operations, with q/k/v and gate/up each one
matrix product, and the loop runs in the caller's thread. What is left is reading the weights:
every new token reads all of them from memory (a matrix-vector product per layer), so
bytes per token decide the speed. Hence the quantized formats of ``kernels.py``: int4 in the
GGUF file's own groups of 32 (about 5 bits a weight with each group's bf16 scale and offset:
0.31 of bf16's bytes; the file's weights, up to the rounding of those scales), int8 rows with
one scale each (half), each through torch's weight-only kernel.
``precision="auto"`` times them at load and keeps the fastest this CPU runs; the same flags
gave twice the speed on one machine as on another. The output layer, the largest matrix, is
shortlisted: every logit through a 4-bit copy, then the 64 highest recomputed from int8
(``kernels.ShortlistWeight``). On the CPU the activations and the cache are float32, whatever
the weights: the kernels get a bf16 copy of the row, and the rest (norms, rotary embeddings,
attention) runs without conversions, where bf16 costs a conversion per operation, and
attention products in bf16 took 8 times float32's time with torch's AVX2 kernels. A prompt goes
through as one matrix-matrix product per layer, in bf16 where the CPU multiplies bf16
natively and in float32 elsewhere: the quantized rows are converted to it. A new token takes
its own one-row path (``_step``) and attends over the cache, by two products (``attend_cached``)
or by SDPA (``attend_sdpa``), whichever is clearly faster here. A format or path rounds
differently from another, so greedy answers may change with it: ``benchmarks/chat_speed.py``
reports each one's next-token agreement with transformers in float32 (at least 0.95 is the
gate).

Same operations in the same order as ``transformers``' LlamaForCausalLM (RMSNorm in float32,
rotary embeddings computed in float32, grouped-query attention through SDPA, SiLU MLP, the output
head tied to the embeddings when the model says so): ``tests/chat/test_decoder.py`` compares the two.
Sampling follows ``generate()``'s order: temperature, then top-k, then top-p.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from devmode.chat.kernels import (
    WEIGHT_FORMATS,
    Int4Weight,
    Matrix,
    four_bit_exact,
    head_format,
    kernel_works,
    linear,
    pick_weights,
)
from devmode.chat.limits import CHAT_PRECISIONS
from devmode.environment import cpu_has_native_bf16, release_freed_memory
from devmode.errors import DevmodeError


class UnsupportedModel(DevmodeError):
    """The model folder is not a Llama-style decoder this module can run."""


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked: greedy at temperature 0, else sampled."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None


@dataclass(frozen=True)
class Cache:
    """What decoding keeps between tokens: every layer's keys and values, and the buffer a new
    token's attention weights go into; all zero past what has been written."""

    keys: torch.Tensor  # (layers, kv_heads, length, head_dim)
    values: torch.Tensor  # the same shape
    weights: torch.Tensor  # (kv_heads, query heads per kv head, length)

    @classmethod
    def allocate(cls, layers, kv_heads, groups, length, head_dim, *, dtype, device) -> Cache:
        shape = (layers, kv_heads, length, head_dim)
        return cls(
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros((kv_heads, groups, length), dtype=dtype, device=device),
        )


# A layer's matrices as the decoder holds them, each from transformers' weights stacked (one
# product instead of several), by the suffix of their names after "model.layers.N."
LAYER_MATRICES = {
    "qkv": tuple(f"self_attn.{x}_proj.weight" for x in "qkv"),
    "out": ("self_attn.o_proj.weight",),
    "gate_up": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "down": ("mlp.down_proj.weight",),
}


@dataclass(frozen=True)
class _Layer:
    qkv: Matrix  # q, k and v projections stacked: one matrix product
    out: Matrix
    gate_up: Matrix  # the MLP's gate and up projections stacked
    down: Matrix
    attention_norm: torch.Tensor
    mlp_norm: torch.Tensor


# How the weights are held: "int4" or "int8" (quantized matrices; their kernels take a bf16 copy
# of each row), "bf16" or "fp32"; "auto" picks one at load time (``kernels.pick_weights``).
PRECISIONS = CHAT_PRECISIONS


class LlamaDecoder:
    """The weights of a Llama-style causal LM, and a forward pass over a key/value cache.

    :param precision: "int4", "int8", "bf16" or "fp32" (see ``PRECISIONS``; "auto" is
        resolved by ``from_weights``)
    :param attention: how a new token attends over the cache: "products" or "sdpa"
        (``ATTENTION_PATHS``; "auto" is resolved by ``from_weights``)
    """

    def __init__(
        self,
        config,
        weights: dict[str, torch.Tensor],
        precision: str,
        device,
        attention: str = "products",
    ):
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"precision must be one of {PRECISIONS[1:]}; found {precision!r}")
        if precision in ("int4", "int8") and not (
            torch.device(device).type == "cpu" and kernel_works(precision) and kernel_works("int8")
        ):
            raise UnsupportedModel(
                f"{precision} weights need torch's weight-only {precision} and int8 kernels "
                "(bf16 activations, on the CPU), and they do not work here. Choose auto, which "
                "picks what runs on this machine, or bf16 or fp32."
            )
        if attention not in ATTENTION_PATHS:
            raise ValueError(
                f"attention must be one of {tuple(ATTENTION_PATHS)}; found {attention!r}"
            )
        self.precision = precision
        self.attention = attention  # a key of ATTENTION_PATHS
        self.picked: dict[str, dict[str, float]] = {}  # what from_weights timed to pick
        # the weights' dtype (the quantized kernels take bf16 activations); on the CPU the
        # activations and the cache are float32 (see the module's docstring), on a GPU bf16
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        self.device = torch.device(device)
        self.dtype = torch.float32 if self.device.type == "cpu" else dtype
        # a prompt's rows: bf16 products where the CPU runs them natively, else float32
        self.rows_dtype = (
            dtype if self.device.type != "cpu" or cpu_has_native_bf16() else torch.float32
        )
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.max_positions = config.max_position_embeddings
        eos = getattr(config, "eos_token_id", None)
        self.eos_ids = tuple(eos if isinstance(eos, list) else [] if eos is None else [eos])

        def norm_weight(name: str) -> torch.Tensor:  # twice over: see _rms_norm
            return torch.cat((weights[name], weights[name])).to(self.device, self.dtype)

        def matrix(*names: str, fmt: str = precision) -> Matrix:
            stacked = torch.cat([weights[name] for name in names]).to(self.device)
            if fmt == "int4":  # 4-bit values only where the weights are 4-bit already: no loss
                return Int4Weight.quantize(stacked, dtype, exact=True) or matrix(*names, fmt="int8")
            return WEIGHT_FORMATS[fmt](stacked, dtype)

        # a lookup table: kept dense, in the weights' dtype
        self.embed = weights["model.embed_tokens.weight"].to(device=self.device, dtype=dtype)
        tied = getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in weights
        head = "model.embed_tokens.weight" if tied else "lm_head.weight"
        fmt = precision
        if self.device.type == "cpu":
            fmt = head_format(precision, tuple(weights[head].shape))
        self.lm_head = matrix(head, fmt=fmt)
        self.norm = norm_weight("model.norm.weight")
        self.layers = []
        for i in range(config.num_hidden_layers):
            p = f"model.layers.{i}."
            self.layers.append(
                _Layer(
                    **{
                        field: matrix(*(p + name for name in names))
                        for field, names in LAYER_MATRICES.items()
                    },
                    attention_norm=norm_weight(p + "input_layernorm.weight"),
                    mlp_norm=norm_weight(p + "post_attention_layernorm.weight"),
                )
            )
        theta = _rope_theta(config)
        steps = torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim
        self.inv_freq = (1.0 / (theta**steps)).to(self.device)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, precision: str = "fp32", device="cpu", attention: str = "products"
    ) -> LlamaDecoder:
        """Load a Hugging Face folder of a Llama-style model (safetensors, one file or shards);
        ``precision="auto"`` and ``attention="auto"`` pick what is fastest here (``from_weights``)."""
        from safetensors.torch import load_file
        from transformers import AutoConfig

        folder = Path(folder)
        config = AutoConfig.from_pretrained(folder)
        _check_supported(config)  # before looking for weights: the clearer refusal
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise UnsupportedModel(f"{folder} holds no .safetensors weights.")
        weights: dict[str, torch.Tensor] = {}
        for file in files:
            weights.update(load_file(file))
        return cls.from_weights(config, weights, precision, device, attention)

    @classmethod
    def from_weights(
        cls,
        config,
        weights: dict[str, torch.Tensor],
        precision: str = "fp32",
        device="cpu",
        attention: str = "products",
    ) -> LlamaDecoder:
        """A decoder from a config and weights by transformers' names: those ``gguf_weights``
        reads, or a loaded ``LlamaForCausalLM``'s ``state_dict()`` (no files needed).

        ``precision="auto"`` estimates a token's products in each weight format whose kernels
        work here (``kernels.pick_weights``; int4 only where the weights are 4-bit already),
        ``attention="auto"`` times both attention paths (``pick_attention``); the fastest are
        kept, and what was measured is in ``picked`` (``describe(timings=True)``)."""
        _check_supported(config)
        picked = {}
        if precision == "auto":
            layer = weights["model.layers.0.mlp.down_proj.weight"]
            four_bit = four_bit_exact(layer)  # and each matrix is checked as it is made
            precision, picked["weights"] = pick_weights(
                _layer_shapes(weights),
                config.num_hidden_layers,
                tuple(weights.get("lm_head.weight", weights["model.embed_tokens.weight"]).shape),
                torch.device(device),
                four_bit,
            )
        decoder = cls(
            config, weights, precision, device, attention=attention.replace("auto", "products")
        )
        # the timed matrices and what quantizing left: 275 MB kept resident otherwise
        release_freed_memory()
        if attention == "auto":
            decoder.attention, picked["attention"] = decoder.pick_attention()
        decoder.picked = {k: v for k, v in picked.items() if v}
        return decoder

    def pick_attention(self, length: int = 256, rounds: int = 3) -> tuple[str, dict[str, float]]:
        """How a new token attends here, and each path's milliseconds for one layer when
        ``length`` positions of a cache twice as long are written ("products" run over all of
        it, SDPA over what is written); the best of ``rounds`` rounds of 10. "products" unless
        SDPA takes at most 3/4 of its time: the two round differently, and a near tie decided
        by the noise of the moment would make the same prompt answer differently after a
        restart (on AMD EPYC, 2026-12-07, they were within 5% of each other in a reply). Off
        the CPU, "products", untimed."""
        if self.device.type != "cpu":
            return "products", {}
        length = min(length, self.max_positions // 2)
        cache = self.new_cache(2 * length)  # a reply's cache: the prompt, and room for the reply
        cache.keys.normal_(), cache.values.normal_()
        queries = torch.randn(cache.weights.shape[:2] + (self.head_dim,), dtype=self.dtype)
        timings = {}
        with torch.inference_mode():
            for name, attend in ATTENTION_PATHS.items():
                attend(queries, cache, 0, length, 0.125)  # sets the kernel up
                best = float("inf")
                for _ in range(rounds):
                    start = time.perf_counter()
                    for _ in range(10):
                        attend(queries, cache, 0, length, 0.125)
                    best = min(best, (time.perf_counter() - start) / 10)
                timings[name] = best * 1000
        return "sdpa" if timings["sdpa"] <= 0.75 * timings["products"] else "products", timings

    def describe(self, timings: bool = False) -> str:
        """What this decoder runs: 'int4 weights, sdpa attention (picked by timing)', or
        '(attention picked by timing)' when the weights were asked for; with ``timings``, the
        milliseconds each candidate took when it was picked (the weights: a token's products
        in each format, estimated from timings of its matrices' shapes read from memory)."""
        text = f"{self.precision} weights, {self.attention} attention"
        if not timings:
            if "weights" in self.picked:
                return text + " (picked by timing)"
            return text + (" (attention picked by timing)" if self.picked else "")
        for what, measured in self.picked.items():
            times = ", ".join(f"{k} {v:.3g} ms" for k, v in measured.items())
            text += f"; {what}: {times}"
        return text

    # ------------------------------------------------------------------------------------------
    # The forward pass

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Llama's RMSNorm of ``x`` with a norm's ``weight`` held twice over (``norm_weight``)."""
        n = x.shape[-1]
        if x.dtype == torch.float32:
            # LayerNorm of [x, -x]: its mean is 0 and its variance mean(x²), so its first half
            # is RMSNorm(x), in one fused kernel; F.rms_norm's CPU path is six operations (10
            # against 17 µs for a row of 576; 0.44 of a 10.9 ms token, AMD EPYC, 2026-12-08)
            return F.layer_norm(torch.cat((x, -x), -1), (2 * n,), weight, eps=self.eps)[..., :n]
        # in float32, as LlamaRMSNorm does, then back to the model's dtype
        x32 = F.rms_norm(x.float(), (n,), eps=self.eps)
        return weight[:n] * x32.to(self.dtype)

    def _rotary(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the positions' angles, with the first half of sin negated (see
        ``_rotate``)."""
        positions = torch.arange(start, start + length, device=self.device, dtype=torch.float)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        sin = angles.sin()
        signed_sin = torch.cat((-sin[:, : freqs.shape[1]], sin[:, freqs.shape[1] :]), dim=-1)
        return angles.cos().to(self.dtype), signed_sin.to(self.dtype)

    def new_cache(self, length: int) -> Cache:
        """Keys and values for ``length`` positions of every layer, and a new token's attention
        weights, allocated once for a reply and zero until written (see ``attend_cached``)."""
        return Cache.allocate(
            len(self.layers),
            self.kv_heads,
            self.heads // self.kv_heads,
            length,
            self.head_dim,
            dtype=self.dtype,
            device=self.device,
        )

    def forward(self, ids: torch.Tensor, start: int, cache: Cache) -> torch.Tensor:
        """Next-token logits (float32, shape ``(vocab,)``) after ``ids`` (shape ``(1, n)``),
        which sit at positions ``start ..``; fills the cache there. A prompt goes in whole from
        position 0, then one token at a time."""
        n = ids.shape[1]
        if n == 1:
            return self._step(ids.view(1), start, cache)
        if start:
            raise ValueError("after the prompt, tokens go in one at a time")
        x = F.embedding(ids, self.embed).to(self.dtype)
        cos, sin = self._rotary(0, n)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        heads, rows = self.heads + self.kv_heads, self.rows_dtype
        for i, layer in enumerate(self.layers):
            qkv = linear(self._rms_norm(x, layer.attention_norm), layer.qkv, rows)
            # queries and keys rotated together: one set of operations for both
            qk = qkv[..., : q_size + kv_size].reshape(1, n, heads, self.head_dim).transpose(1, 2)
            qk = _rotate(qk, cos, sin)
            q, k, v = qk[:, : self.heads], qk[:, self.heads :], qkv[..., q_size + kv_size :]
            cache.keys[i, :, :n] = k[0]
            cache.values[i, :, :n] = v.view(n, self.kv_heads, -1).transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                q,
                cache.keys[None, i, :, :n],
                cache.values[None, i, :, :n],
                is_causal=True,
                scale=self.head_dim**-0.5,
                enable_gqa=self.kv_heads != self.heads,
            )
            x = x + linear(attended.transpose(1, 2).reshape(1, n, q_size), layer.out, rows)
            gate, up = linear(self._rms_norm(x, layer.mlp_norm), layer.gate_up, rows).chunk(
                2, dim=-1
            )
            x = x + linear(F.silu(gate) * up, layer.down, rows)
        last = self._rms_norm(x[:, -1], self.norm)  # only the last position is read
        return linear(last, self.lm_head)[0].float()

    def _step(self, token: torch.Tensor, position: int, cache: Cache) -> torch.Tensor:
        """``forward`` for one new token: the same operations on one row, without the reshapes
        a prompt's many rows need (each costs a little, and a token goes through ~30 layers)."""
        x = F.embedding(token, self.embed).to(self.dtype)  # (1, hidden)
        cos, sin = self._rotary(position, 1)
        qk_size = (self.heads + self.kv_heads) * self.head_dim
        attend = ATTENTION_PATHS[self.attention]
        for i, layer in enumerate(self.layers):
            qkv = linear(self._rms_norm(x, layer.attention_norm), layer.qkv)
            qk = qkv[:, :qk_size].to(self.dtype).view(-1, self.head_dim)
            qk = _rotate(qk, cos, sin)  # one row a head
            cache.keys[i, :, position] = qk[self.heads :]
            cache.values[i, :, position] = qkv[:, qk_size:].view(self.kv_heads, self.head_dim)
            queries = qk[: self.heads].view(self.kv_heads, -1, self.head_dim)
            attended = attend(queries, cache, i, position + 1, self.head_dim**-0.5)
            x = x + linear(attended, layer.out).to(self.dtype)
            gate, up = linear(self._rms_norm(x, layer.mlp_norm), layer.gate_up).chunk(2, dim=-1)
            x = x + linear(F.silu(gate) * up, layer.down).to(self.dtype)
        return linear(self._rms_norm(x, self.norm), self.lm_head)[0].float()

    # ------------------------------------------------------------------------------------------
    # Generation

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        sampling: Sampling = Sampling(),
        *,
        stop_ids: Sequence[int] = (),
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[int]:
        """Yield new token ids one by one: up to ``max_new_tokens``, until one of ``stop_ids``
        (which is yielded too) or until ``should_stop()`` says so (asked after every token)."""
        room = self.max_positions - len(prompt_ids)
        if room < 1:
            raise ValueError(
                f"The prompt has {len(prompt_ids)} tokens; the model reads at most "
                f"{self.max_positions}."
            )
        max_new_tokens = min(max_new_tokens, room)
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(device=self.device)
            if sampling.seed is not None:
                generator.manual_seed(sampling.seed)
            else:
                generator.seed()
        cache = self.new_cache(len(prompt_ids) + max_new_tokens)
        with torch.inference_mode():
            ids = torch.tensor([list(prompt_ids)], device=self.device)
            logits = self.forward(ids, 0, cache)
            position = len(prompt_ids)
            for produced in range(1, max_new_tokens + 1):
                token = pick_token(logits, sampling, generator)
                yield token
                if token in stop_ids or produced == max_new_tokens or should_stop():
                    return
                ids = torch.tensor([[token]], device=self.device)
                logits = self.forward(ids, position, cache)
                position += 1


def pick_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0; else a draw from ``sampling_logits``."""
    if sampling.temperature <= 0:
        return int(logits.argmax())
    filtered = sampling_logits(logits, sampling)
    return int(torch.multinomial(filtered.softmax(-1), 1, generator=generator))


def sampling_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The logits a token is drawn from: divided by the temperature, then all but the top-k set
    to -inf, then all outside the top-p nucleus (the order of transformers' warpers)."""
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.numel():
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(logits)  # ascending, as transformers' TopPLogitsWarper
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - sampling.top_p
        drop[-1] = False  # the likeliest token always stays
        logits = logits.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
    return logits


def attend_cached(
    queries: torch.Tensor, cache: Cache, layer: int, length: int, scale: float
) -> torch.Tensor:
    """One new token's attention over the first ``length`` positions of ``layer`` in the cache:
    ``queries`` shaped (kv_heads, query heads per kv head, head_dim); the result is one row.

    Two small products, not SDPA (the CPU's SDPA kernel costs twice as much for one query). In
    bf16 they run over the whole cache, whose length is fixed for a reply: oneDNN builds its
    kernel once per reply instead of once per token (~0.3 ms each time), and each layer's keys
    are one contiguous block. Keys, values and weights past ``length`` are zero, so the first
    ``length`` scores and the weighted sum are bit for bit those of products over the first
    ``length`` positions alone (``tests/chat/test_decoder.py`` checks it). float32 (the CPU's
    cache) goes through another kernel, where the zeros change the last bit; it reads the first
    ``length`` only, and the weights need no buffer.
    """
    keys, values, weights = cache.keys[layer], cache.values[layer], cache.weights
    if keys.dtype == torch.float32:  # products over the zeros would differ in the last bit
        keys, values = keys[:, :length], values[:, :length]
        scores = torch.bmm(queries, keys.transpose(1, 2)).mul_(scale)
        return torch.bmm(scores.softmax(-1), values).view(1, -1)
    scores = torch.bmm(queries, keys.transpose(1, 2))[..., :length]
    # softmax in float32, rounded to the model's dtype as it is copied into the weights
    weights[..., :length].copy_((scores * scale).float().softmax(-1))
    return torch.bmm(weights, values).view(1, -1)


def attend_sdpa(
    queries: torch.Tensor, cache: Cache, layer: int, length: int, scale: float
) -> torch.Tensor:
    """``attend_cached``'s result through torch's SDPA kernel over the first ``length`` positions:
    each kv head is a batch row, its query heads the queries (one token: no mask needed)."""
    keys = cache.keys[layer, :, :length]
    values = cache.values[layer, :, :length]
    return F.scaled_dot_product_attention(queries, keys, values, scale=scale).view(1, -1)


# How a new token attends over the cache, by name.
ATTENTION_PATHS = {"products": attend_cached, "sdpa": attend_sdpa}


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's ``x * cos + rotate_half(x) * sin`` with rotate_half(x) = [-x2, x1]. Here the
    halves are swapped by ``roll`` and the minus sign sits in ``signed_sin`` = [-sin, sin]:
    the same products bit for bit (negation is exact), two operations fewer."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin


def _layer_shapes(weights: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """The shapes of layer 0's matrices as the decoder stacks them (``LAYER_MATRICES``)."""
    shapes = []
    for names in LAYER_MATRICES.values():
        stacked = [weights["model.layers.0." + name].shape for name in names]
        shapes.append((sum(shape[0] for shape in stacked), stacked[0][1]))
    return shapes


def _rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _check_supported(config) -> None:
    """Refuse what this decoder does not implement, rather than generate nonsense."""
    problems = []
    if config.model_type != "llama":
        problems.append(f"model_type {config.model_type!r} (expected 'llama')")
    rope = getattr(config, "rope_parameters", None) or {}
    rope_type = rope.get("rope_type", "default")
    scaling = getattr(config, "rope_scaling", None)
    if rope_type != "default" or (scaling and scaling.get("rope_type", "default") != "default"):
        problems.append(f"rope type {rope_type!r} (only the default is implemented)")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("bias terms in attention or MLP")
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"activation {config.hidden_act!r}")
    if problems:
        raise UnsupportedModel(
            "The lean decoder runs Llama-style models only; this one has "
            + ", ".join(problems)
            + ". Serve it through an OpenAI-compatible endpoint instead. Config: "
            + json.dumps({"model_type": config.model_type})
        )
