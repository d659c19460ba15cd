"""A conversation's settings: the context it sends (system prompt, pinned documents, budget),
the limits on each reply, and which model answers. Each setting is defined once, here, with
its bounds and help: the Chat sandbox's widgets and the CLI's options are made from them.

    settings = ChatSettings(budget_tokens=512, limits=ChatLimits(max_tokens=20, banned=("guarantee",)))
    plan = settings.plan(backend, history, "What is a bond?")      # context.ContextPlan
    settings.form_values()  /  ChatSettings.from_form(values)      # as the page's widgets hold them
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devmode.chat.context import ChatInputError, ContextPlan, assemble_context
from devmode.specs import Settings, setting

if TYPE_CHECKING:
    from devmode.chat.replies import Backend

BANNED_ACTIONS = ("block", "mask")
BACKEND_KINDS = ("embedded", "endpoint")
# How the embedded chat model holds its weights: auto | int4 (4-bit groups) | int8 (int8 rows;
# both through kernels that take a bf16 copy of each row) | bf16 | fp32. See kernels.py.
CHAT_PRECISIONS = ("auto", "int4", "int8", "bf16", "fp32")
DEFAULT_SYSTEM_PROMPT = "You are a concise assistant for financial analysts."
# The OpenAI API's limit on stop sequences, kept for every backend.
MAX_STOP_SEQUENCES = 4
# Sections of the Chat sandbox's settings column.
RESPONSE_LIMITS = "Response limits"
SAMPLING = "Sampling"
ENDPOINT = "Endpoint"


@dataclass(frozen=True)
class ChatLimits(Settings):
    """Everything that limits or shapes one reply. Validated on construction."""

    error = ChatInputError
    noun = "limit"

    max_tokens: int = setting(
        256,
        "The most tokens a reply may have.",
        minimum=1,
        maximum=32768,
        label="Max tokens",
        section=RESPONSE_LIMITS,
    )
    stop: tuple[str, ...] = setting(
        (),
        f"The reply ends before any of these (at most {MAX_STOP_SEQUENCES}). On the page one "
        "per line; write \\n for a new line.",
        label="Stop sequences",
        widget="text_area",
        section=RESPONSE_LIMITS,
    )
    banned: tuple[str, ...] = setting(
        (),
        "Banned words or phrases: whole words, any case. On the page separated by commas.",
        label="Banned words or phrases",
        section=RESPONSE_LIMITS,
    )
    banned_action: str = setting(
        "block",
        "When a banned word appears: block ends the reply there; mask hides it and goes on.",
        choices=BANNED_ACTIONS,
        label="When one appears",
        widget="radio",
        section=RESPONSE_LIMITS,
    )
    temperature: float = setting(
        0.7,
        "0 is greedy.",
        minimum=0,
        maximum=2,
        label="Temperature (0 = greedy)",
        widget="slider",
        step=0.05,
        section=SAMPLING,
    )
    top_p: float = setting(
        0.95,
        "Sample from the smallest set of tokens this likely.",
        above=0,
        maximum=1,
        label="Top-p",
        widget="slider",
        step=0.01,
        section=SAMPLING,
    )
    top_k: int = setting(
        50,
        "Sample from this many likeliest tokens; 0 = off. Embedded model only.",
        minimum=0,
        label="Top-k (embedded)",
        section=SAMPLING,
    )
    presence_penalty: float = setting(
        0.0,
        "OpenAI-compatible endpoints only.",
        minimum=-2,
        maximum=2,
        label="Presence penalty (endpoint)",
        step=0.1,
        section=SAMPLING,
    )
    frequency_penalty: float = setting(
        0.0,
        "OpenAI-compatible endpoints only.",
        minimum=-2,
        maximum=2,
        label="Frequency penalty (endpoint)",
        step=0.1,
        section=SAMPLING,
    )
    seed: int | None = setting(
        None,
        "Seed of the sampling; empty: random.",
        label="Seed",
        widget="text_input",
        section=SAMPLING,
    )
    timeout_s: float = setting(
        60.0,
        "Seconds for the whole reply, first token included.",
        above=0,
        label="Timeout (s)",
        flag="--timeout",
        step=5.0,
        section=RESPONSE_LIMITS,
    )

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        object.__setattr__(self, "banned", tuple(b.strip() for b in self.banned if b.strip()))
        super().__post_init__()

    def check_together(self) -> None:
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise ChatInputError(
                f"stop must be at most {MAX_STOP_SEQUENCES} sequences (the OpenAI API's limit); "
                f"found {self.stop!r}."
            )


@dataclass(frozen=True)
class BackendSpec(Settings):
    """Which model answers: the embedded one, or an OpenAI-compatible endpoint. Holds the *name*
    of the environment variable or Streamlit secret with the API key, never the key itself, so
    a spec can be stored and exported."""

    error = ChatInputError

    kind: str = setting(
        "embedded",
        "The embedded SmolLM2-135M-Instruct, or an OpenAI-compatible endpoint.",
        choices=BACKEND_KINDS,
        label="Model",
        widget="radio",
    )
    base_url: str = setting(
        "",
        "An OpenAI-compatible endpoint (default: the embedded model). `python -m devmode serve` "
        "serves the embedded model at http://127.0.0.1:8000/v1; vLLM, Ollama, LM Studio and "
        "OpenAI work too.",
        label="Base URL",
        section=ENDPOINT,
    )
    model: str = setting(
        "smollm2", "The model name the endpoint serves.", label="Model name", section=ENDPOINT
    )
    api_key_name: str = setting(
        "OPENAI_API_KEY",
        "The environment variable (or Streamlit secret) holding the endpoint's API key; the key "
        "is read when a message is sent and never stored.",
        label="API key: secret or environment variable name",
        flag="--api-key-env",
        section=ENDPOINT,
    )
    precision: str = setting(
        "auto",
        "How the embedded model holds its weights. auto: the fastest here, timed at load: int4 "
        "(for weights that are 4-bit already, as the embedded model's are), int8, bf16 and fp32 "
        "on a CPU with native bf16; fp32 elsewhere, untimed; bf16 on a GPU.",
        choices=CHAT_PRECISIONS,
        label="Weights of the embedded model",
    )

    def check_together(self) -> None:
        if self.kind == "endpoint":
            if not re.match(r"^https?://[^\s/]+", self.base_url or ""):
                raise ChatInputError(
                    "An endpoint needs a base URL such as http://127.0.0.1:8000/v1; found "
                    f"{self.base_url!r}. Enter the server's address, with http:// or https://."
                )
            if not self.model.strip():
                raise ChatInputError(
                    "An endpoint needs the model name it serves, e.g. gpt-4o-mini."
                )

    def describe(self) -> str:
        if self.kind == "embedded":
            return f"embedded SmolLM2-135M-Instruct ({self.precision})"
        return f"{self.model} at {self.base_url}"


@dataclass(frozen=True)
class ChatSettings(Settings):
    """A conversation's settings: the context it sends and the limits on each reply."""

    error = ChatInputError

    system_prompt: str = setting(
        DEFAULT_SYSTEM_PROMPT,
        "Sent first, with every message.",
        label="System prompt",
        flag="--system",
        widget="text_area",
    )
    pinned: tuple[str, ...] = setting(
        (),
        "Documents or few-shot examples kept in every request, after the system prompt. On the "
        "page, separate documents with a line holding only ---.",
        label="Pinned context",
        widget="text_area",
    )
    budget_tokens: int = setting(
        2048,
        "The whole context: system prompt, pinned context, conversation and the message must "
        "fit; the oldest turns are dropped first, then pinned documents are cut.",
        minimum=16,
        maximum=131072,
        unit="tokens",
        label="Context budget (tokens)",
        flag="--budget",
        step=64,
    )
    limits: ChatLimits = field(default_factory=ChatLimits)
    backend: BackendSpec = field(default_factory=BackendSpec)

    def __post_init__(self):
        object.__setattr__(self, "pinned", tuple(p for p in self.pinned if p.strip()))
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return {
            "system_prompt": self.system_prompt,
            "pinned": list(self.pinned),
            "budget_tokens": self.budget_tokens,
            "limits": self.limits.to_dict(),
            "backend": self.backend.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ChatSettings:
        return cls(
            system_prompt=values.get("system_prompt", DEFAULT_SYSTEM_PROMPT),
            pinned=tuple(values.get("pinned", ())),
            budget_tokens=values.get("budget_tokens", cls.spec("budget_tokens").default),
            limits=ChatLimits.from_dict(values.get("limits", {})),
            backend=BackendSpec.from_dict(values.get("backend", {})),
        )

    def plan(
        self,
        backend: Backend,
        history: Sequence[tuple[str, str]],
        prompt: str,
        budget_tokens: int | None = None,
    ) -> ContextPlan:
        """This conversation's context for ``prompt`` (see ``assemble_context``), counted and,
        when the backend can, cut by ``backend``'s tokenizer; ``budget_tokens`` overrides the
        settings' budget (a bench variant's)."""
        return assemble_context(
            self.system_prompt,
            self.pinned,
            history,
            prompt,
            budget_tokens=budget_tokens or self.budget_tokens,
            count_tokens=backend.count_tokens,
            truncate=getattr(backend, "truncate", None),
            costs=getattr(backend, "template_costs", None),
        )

    def changed_by(self, values: dict[str, Any]) -> ChatSettings:
        """These settings with ``values`` put over them: flat, by field name, any setting of the
        chat, its limits or its backend (a command line's options). A changed base URL
        switches between the embedded model and an endpoint."""

        def over(cls, current: Settings) -> dict[str, Any]:
            return {
                **current.to_dict(),
                **{spec.name: values[spec.name] for spec in cls.specs() if spec.name in values},
            }

        backend = self.backend
        if any(spec.name in values for spec in BackendSpec.specs()):
            merged = over(BackendSpec, backend)
            backend = BackendSpec.from_dict(
                {**merged, "kind": "endpoint" if merged["base_url"] else "embedded"}
            )
        return ChatSettings.from_dict(
            {
                **over(ChatSettings, self),
                "limits": over(ChatLimits, self.limits),
                "backend": backend.to_dict(),
            }
        )

    # -- as a form holds them: one value per setting, lists as the text a person types ---------

    def form_values(self) -> dict[str, Any]:
        """Every setting (the limits' and the backend's too) by its field name, as a form's
        widgets show it: lists and the optional seed as text."""
        return {
            **self.backend.to_dict(),
            **self.limits.to_dict(),
            "system_prompt": self.system_prompt,
            "pinned": documents_as_text(self.pinned),
            "budget_tokens": self.budget_tokens,
            "stop": stop_sequences_as_text(self.limits.stop),
            "banned": ", ".join(self.limits.banned),
            "seed": "" if self.limits.seed is None else str(self.limits.seed),
        }

    @classmethod
    def from_form(cls, values: dict[str, Any]) -> ChatSettings:
        """The inverse of ``form_values``: settings from what a form's widgets hold
        (``ChatInputError`` says what is wrong with them)."""
        limits = {spec.name: values[spec.name] for spec in ChatLimits.specs()}
        limits.update(
            stop=stop_sequences_from_text(values["stop"]),
            banned=words_from_text(values["banned"]),
            **ChatLimits.parse_values({"seed": values["seed"]}),
        )
        backend = {
            spec.name: values[spec.name].strip() if spec.type is str else values[spec.name]
            for spec in BackendSpec.specs()
        }
        return cls(
            system_prompt=values["system_prompt"],
            pinned=documents_from_text(values["pinned"]),
            budget_tokens=int(values["budget_tokens"]),
            limits=ChatLimits(**limits),
            backend=BackendSpec(**backend),
        )

    @classmethod
    def form_fields(cls) -> list[str]:
        """The names ``form_values`` gives and ``from_form`` reads."""
        return [spec.name for k in (BackendSpec, ChatLimits, cls) for spec in k.specs()]


# ----------------------------------------------------------------------------------------------
# Lists typed as text


def stop_sequences_from_text(text: str) -> tuple[str, ...]:
    """One stop sequence per line, as typed in a form: ``\\n`` and ``\\t`` stand for a
    newline and a tab (a sequence made of newlines cannot be typed on its own line)."""
    lines = [line for line in text.splitlines() if line]
    return tuple(line.replace("\\n", "\n").replace("\\t", "\t") for line in lines)


def stop_sequences_as_text(stops: Sequence[str]) -> str:
    """The inverse of ``stop_sequences_from_text``: one per line, newlines and tabs escaped."""
    return "\n".join(s.replace("\n", "\\n").replace("\t", "\\t") for s in stops)


# Pinned documents typed in one box are separated by a line holding only this.
DOCUMENT_SEPARATOR = "---"


def documents_from_text(text: str) -> tuple[str, ...]:
    """Pinned documents typed in one box, separated by lines holding only ``---``."""
    documents, current = [], []
    for line in text.splitlines():
        if line.strip() == DOCUMENT_SEPARATOR:
            documents.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    documents.append("\n".join(current).strip())
    return tuple(d for d in documents if d)


def documents_as_text(documents: Sequence[str]) -> str:
    return f"\n{DOCUMENT_SEPARATOR}\n".join(documents)


def words_from_text(text: str) -> tuple[str, ...]:
    """Banned words or phrases typed as a list: separated by commas or new lines."""
    return tuple(w.strip() for w in re.split(r"[,\n]", text) if w.strip())


# A table cell or a --variant value that holds a list (stop sequences, banned words) separates
# its items with this, everywhere; "\n" in an item stands for a newline.
LIST_SEPARATOR = ";"
LIST_HELP = f"separated by {LIST_SEPARATOR}"


def list_from_cell(text: str, *, strip: bool = False) -> tuple[str, ...]:
    """The items of a list cell: split at ``LIST_SEPARATOR``, ``\\n`` read as a newline, empty
    items dropped (``strip``: items lose their outer spaces, as banned words do)."""
    items = (part.replace("\\n", "\n") for part in str(text).split(LIST_SEPARATOR))
    return tuple(item.strip() if strip else item for item in items if item.strip())


def cell_from_list(items: Sequence[str]) -> str:
    """The inverse of ``list_from_cell``: newlines written as ``\\n``."""
    return LIST_SEPARATOR.join(item.replace("\n", "\\n") for item in items)
