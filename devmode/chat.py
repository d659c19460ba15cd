"""The chat sandbox's core: response limits, the context assembled under a token budget, and a
report of which limit ended each reply. No model code here (see ``llm.py``) and no Streamlit.

    limits = ChatLimits(max_tokens=20, banned=("guarantee",))
    plan = assemble_context(system, pinned, history, prompt, budget_tokens=512, count_tokens=n)
    reply = respond(backend, plan, limits, on_text=print)
    reply.stopped_by, reply.detail      # "max_tokens", "stopped: max tokens (20)"

Stop sequences and banned words are enforced here, on the streamed text, the same way for every
backend: a stop sequence ends the reply before it; a banned word either ends the reply before it
(``block``) or is masked and the reply goes on (``mask``). Text that could be the start of a stop
sequence or banned word is held back until it is known not to be, so it is never shown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from devmode.config import CHAT_PRECISIONS
from devmode.errors import DevmodeError

# Why a reply ended. "end": the model finished on its own.
STOP_REASONS = (
    "end",
    "max_tokens",
    "stop_sequence",
    "banned_word",
    "timeout",
    "context_overflow",
    "api_error",
)
BANNED_ACTIONS = ("block", "mask")
MASK = "█"
BACKEND_KINDS = ("embedded", "endpoint")
DEFAULT_SYSTEM_PROMPT = "You are a concise assistant for financial analysts."


class ChatInputError(DevmodeError):
    """The prompt or the settings cannot be sent (empty prompt, banned word in it, bad limit)."""


class ContextOverflow(DevmodeError):
    """The parts that must be sent (system prompt and the new message) exceed the budget."""


@dataclass(frozen=True)
class ChatLimits:
    """Everything that limits or shapes one reply. Validated on construction."""

    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    banned: tuple[str, ...] = ()
    banned_action: str = "block"  # block (end the reply there) | mask (hide it, go on)
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.95
    top_k: int = 50  # embedded model only; 0 = off
    presence_penalty: float = 0.0  # OpenAI-compatible endpoints only
    frequency_penalty: float = 0.0  # OpenAI-compatible endpoints only
    seed: int | None = None
    timeout_s: float = 60.0  # the whole reply, first token included

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        object.__setattr__(self, "banned", tuple(b.strip() for b in self.banned if b.strip()))
        checks = [
            ("max_tokens", 1 <= self.max_tokens <= 32768, "a whole number from 1, e.g. 256"),
            ("temperature", 0 <= self.temperature <= 2, "from 0 (greedy) to 2, e.g. 0.7"),
            ("top_p", 0 < self.top_p <= 1, "above 0 and at most 1, e.g. 0.95"),
            ("top_k", self.top_k >= 0, "0 (off) or more, e.g. 50"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "from -2 to 2"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "from -2 to 2"),
            ("timeout_s", self.timeout_s > 0, "above 0 seconds, e.g. 60"),
            ("stop", len(self.stop) <= 4, "at most 4 sequences (the OpenAI API's limit)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ChatInputError(f"{name} must be {expected}; found {getattr(self, name)!r}.")
        if self.banned_action not in BANNED_ACTIONS:
            raise ChatInputError(
                f"banned_action must be one of {', '.join(BANNED_ACTIONS)}; "
                f"found {self.banned_action!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["stop"], values["banned"] = list(self.stop), list(self.banned)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ChatLimits:
        values = dict(values)
        values["stop"] = tuple(values.get("stop", ()))
        values["banned"] = tuple(values.get("banned", ()))
        return cls(**values)


@dataclass(frozen=True)
class BackendSpec:
    """Which model answers: the embedded one, or an OpenAI-compatible endpoint. Holds the *name*
    of the environment variable or Streamlit secret with the API key, never the key itself, so
    a spec can be stored and exported."""

    kind: str = "embedded"  # embedded | endpoint
    base_url: str = ""  # endpoint: e.g. http://127.0.0.1:8000/v1
    model: str = "smollm2"  # endpoint: the model name it serves
    api_key_name: str = "OPENAI_API_KEY"  # endpoint: environment variable / secret holding it
    precision: str = "auto"  # embedded: how it holds its weights (config.CHAT_PRECISIONS)

    def __post_init__(self):
        if self.kind not in BACKEND_KINDS:
            raise ChatInputError(
                f"backend must be one of {', '.join(BACKEND_KINDS)}; found {self.kind!r}."
            )
        if self.precision not in CHAT_PRECISIONS:
            raise ChatInputError(
                f"precision must be one of {', '.join(CHAT_PRECISIONS)}; found {self.precision!r}."
            )
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChatSettings:
    """A conversation's settings: the context it sends and the limits on each reply."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    pinned: tuple[str, ...] = ()  # documents and few-shot examples kept in the context
    budget_tokens: int = 2048  # the whole context: system, pinned, history, message
    limits: ChatLimits = field(default_factory=ChatLimits)
    backend: BackendSpec = field(default_factory=BackendSpec)

    def __post_init__(self):
        object.__setattr__(self, "pinned", tuple(p for p in self.pinned if p.strip()))
        if not 16 <= self.budget_tokens <= 131072:
            raise ChatInputError(
                f"budget_tokens must be from 16 to 131072 tokens, e.g. 2048; found "
                f"{self.budget_tokens!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "system_prompt": self.system_prompt,
            "pinned": list(self.pinned),
            "budget_tokens": self.budget_tokens,
            "limits": self.limits.to_dict(),
            "backend": self.backend.to_dict(),
        }

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
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ChatSettings:
        return cls(
            system_prompt=values.get("system_prompt", DEFAULT_SYSTEM_PROMPT),
            pinned=tuple(values.get("pinned", ())),
            budget_tokens=values.get("budget_tokens", 2048),
            limits=ChatLimits.from_dict(values.get("limits", {})),
            backend=BackendSpec(**values.get("backend", {})),
        )


# ----------------------------------------------------------------------------------------------
# Context


@dataclass(frozen=True)
class ContextPart:
    kind: str  # system | pinned | history | prompt
    role: str  # system | user | assistant
    text: str  # as sent (after truncation); the original when dropped
    tokens: int  # as sent; what it would have cost when dropped
    status: str  # kept | truncated | dropped


@dataclass(frozen=True)
class ContextPlan:
    """The prompt as it will be sent, part by part, and what had to go to fit the budget."""

    parts: list[ContextPart]
    budget_tokens: int

    @property
    def used_tokens(self) -> int:
        return sum(p.tokens for p in self.parts if p.status != "dropped")

    @property
    def dropped(self) -> list[ContextPart]:
        return [p for p in self.parts if p.status != "kept"]

    @classmethod
    def from_messages(cls, messages: Sequence[dict[str, str]]) -> ContextPlan:
        """A plan for chat messages that arrive ready-made (an API request): nothing is cut.
        System messages go first, as ``messages()`` sends them; the last message must be the
        user's."""
        if not messages or messages[-1].get("role") != "user":
            raise ChatInputError(
                "Expected a list of messages ending with the user's; found "
                f"{[m.get('role') for m in messages] or 'none'}."
            )
        parts = [
            ContextPart("system", "system", m["content"], 0, "kept")
            for m in messages
            if m["role"] == "system"
        ]
        parts += [
            ContextPart("history", m["role"], m["content"], 0, "kept")
            for m in messages[:-1]
            if m["role"] != "system"
        ]
        parts.append(ContextPart("prompt", "user", messages[-1]["content"], 0, "kept"))
        return cls(parts, budget_tokens=0)

    def messages(self) -> list[dict[str, str]]:
        """Chat messages: the system prompt with the pinned documents, then history, then prompt."""
        sent = [p for p in self.parts if p.status != "dropped"]
        system = "\n\n".join(p.text for p in sent if p.kind in ("system", "pinned") and p.text)
        out = [{"role": "system", "content": system}] if system else []
        out += [
            {"role": p.role, "content": p.text} for p in sent if p.kind in ("history", "prompt")
        ]
        return out


def assemble_context(
    system: str,
    pinned: Sequence[str],
    history: Sequence[tuple[str, str]],
    prompt: str,
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    truncate: Callable[[str, int], str] | None = None,
    message_overhead: int = 4,
) -> ContextPlan:
    """Fit the context into ``budget_tokens``: what must go, goes in; the rest while it fits.

    Priority: the system prompt and the new message always (else ``ContextOverflow``); then the
    pinned documents in order (the first that does not fit is cut to the room left, when
    ``truncate`` is given and at least 16 tokens are left, and the later ones dropped); then the
    conversation, newest turn first, whole turns only: the oldest turns are dropped first.

    :param history: ``(role, text)`` pairs, oldest first, role "user" or "assistant"
    :param count_tokens: the model's tokenizer, as a count; each message also costs
        ``message_overhead`` tokens of chat template
    """
    if not prompt.strip():
        raise ChatInputError("The message is empty. Type something to send.")
    if budget_tokens < 16:
        raise ChatInputError(
            f"The context budget must be at least 16 tokens; found {budget_tokens}."
        )

    def cost(text: str) -> int:
        return count_tokens(text) + message_overhead

    system_part = ContextPart("system", "system", system, cost(system) if system else 0, "kept")
    prompt_part = ContextPart("prompt", "user", prompt, cost(prompt), "kept")
    room = budget_tokens - system_part.tokens - prompt_part.tokens
    if room < 0:
        raise ContextOverflow(
            f"The system prompt ({system_part.tokens} tokens) and the message "
            f"({prompt_part.tokens} tokens) need {budget_tokens - room} tokens, more than the "
            f"whole context budget of {budget_tokens}. Raise the budget or shorten them."
        )
    pinned_parts = []
    for text in pinned:
        tokens = count_tokens(text)  # joined into the system message: no extra overhead
        if tokens <= room:
            pinned_parts.append(ContextPart("pinned", "system", text, tokens, "kept"))
            room -= tokens
        elif truncate and room >= 16:
            cut = truncate(text, room)
            pinned_parts.append(
                ContextPart("pinned", "system", cut, count_tokens(cut), "truncated")
            )
            room -= pinned_parts[-1].tokens
        else:
            pinned_parts.append(ContextPart("pinned", "system", text, tokens, "dropped"))
    history_parts: list[ContextPart] = []
    full = True
    for turn in reversed(_turns(history)):
        tokens = sum(cost(text) for _, text in turn)
        status = "kept" if full and tokens <= room else "dropped"
        if status == "kept":
            room -= tokens
        else:
            full = False  # once a turn is dropped, every older turn goes too
        history_parts[:0] = [ContextPart("history", r, t, cost(t), status) for r, t in turn]
    return ContextPlan([system_part, *pinned_parts, *history_parts, prompt_part], budget_tokens)


def plan_rows(plan: ContextPlan, preview_chars: int = 80) -> list[dict[str, Any]]:
    """The plan as table rows for a person: each part, its tokens and what happened to it."""
    rows = []
    for i, part in enumerate(plan.parts):
        text = " ".join(part.text.split())
        rows.append(
            {
                "part": _part_name(plan.parts, i),
                "kind": part.kind,
                "role": part.role,
                "tokens": part.tokens,
                "status": part.status,
                "text": text if len(text) <= preview_chars else text[: preview_chars - 1] + "…",
            }
        )
    return rows


def _part_name(parts: list[ContextPart], i: int) -> str:
    part = parts[i]
    if part.kind in ("system", "prompt"):
        return {"system": "system prompt", "prompt": "new message"}[part.kind]
    same = [j for j, p in enumerate(parts) if p.kind == part.kind]
    label = "pinned" if part.kind == "pinned" else f"history ({part.role})"
    return f"{label} {same.index(i) + 1}"


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


def _turns(history: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Group messages into turns: a user message with the replies that follow it."""
    turns: list[list[tuple[str, str]]] = []
    for role, text in history:
        if role == "user" or not turns:
            turns.append([])
        turns[-1].append((role, text))
    return turns


# ----------------------------------------------------------------------------------------------
# Limits on the streamed reply


@dataclass
class LimitWatcher:
    """Feed it the reply's text as it streams; it says what may be shown and when to stop."""

    limits: ChatLimits
    text: str = ""  # everything shown so far (masked)
    stopped_by: str | None = None
    detail: str = ""
    masked: list[str] = field(default_factory=list)
    _pending: str = ""
    _patterns: list[tuple[str, re.Pattern]] = field(default_factory=list)

    def __post_init__(self):
        self._patterns = [(word, _whole_word(word)) for word in self.limits.banned]

    @property
    def _holdback(self) -> int:
        """Characters kept back: the longest stop sequence or banned word (one more than a
        partial match needs, so the word boundary after a banned word is seen too)."""
        longest = max((len(s) for s in (*self.limits.stop, *self.limits.banned)), default=1)
        return longest

    def feed(self, delta: str) -> str:
        """Add streamed text; returns the part that is now safe to show ('' if none)."""
        if self.stopped_by:
            return ""
        self._pending += delta
        return self._release(final=False)

    def finish(self) -> str:
        """The stream ended: release what was held back (after a last check)."""
        return self._release(final=True)

    def stop(self, reason: str, detail: str) -> None:
        if not self.stopped_by:
            self.stopped_by, self.detail = reason, detail

    def _release(self, final: bool) -> str:
        hits = []
        for stop in self.limits.stop:
            at = self._pending.find(stop)
            if at >= 0:
                hits.append((at, "stop_sequence", stop))
        banned = self._banned_matches(final)
        hits += [(start, "banned_word", word) for start, _, word in banned]
        blocking = [
            h for h in hits if h[1] == "stop_sequence" or self.limits.banned_action == "block"
        ]
        if blocking:
            at, reason, what = min(blocking)
            shown = self._pending[:at]
            self.text += shown
            self._pending = ""
            label = "stop sequence" if reason == "stop_sequence" else "banned word"
            self.stop(reason, f"stopped: {label} {what!r}")
            return shown
        for start, end, word in sorted(banned):  # mask mode: hide the word, go on
            self._pending = self._pending[:start] + MASK * (end - start) + self._pending[end:]
            self.masked.append(word)
        keep = 0 if final else self._holdback
        shown = self._pending[: max(0, len(self._pending) - keep)]
        self._pending = self._pending[len(shown) :]
        self.text += shown
        return shown

    def _banned_matches(self, final: bool) -> list[tuple[int, int, str]]:
        """(start, end, word) of each banned word in the held-back text, whole words only.

        The last character already shown is looked at too ("un" shown, "guaranteed" held back
        is not the word "guaranteed"), and a match at the very end counts only once the stream
        has ended, since the next character may still make it part of a longer word.
        """
        before = self.text[-1:]
        text = before + self._pending
        found = []
        for word, pattern in self._patterns:
            for match in pattern.finditer(text, len(before)):
                if final or match.end() < len(text):
                    found.append((match.start() - len(before), match.end() - len(before), word))
        return found


def _whole_word(word: str) -> re.Pattern:
    """``word`` as a whole word or phrase, any case ('rate' is not found in 'rates')."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def check_prompt(prompt: str, limits: ChatLimits) -> None:
    """Refuse a prompt that itself holds a banned word (the reply would be judged by it)."""
    for word in limits.banned:
        if _whole_word(word).search(prompt):
            raise ChatInputError(
                f"The message contains the banned word {word!r}. Remove it from the message, or "
                "take it off the banned list."
            )


# ----------------------------------------------------------------------------------------------
# One reply, from any backend


class Backend(Protocol):
    """A chat model: ``llm.EmbeddedBackend`` or ``llm.OpenAIBackend``."""

    name: str

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self, messages: list[dict[str, str]], limits: ChatLimits, should_stop: Callable[[], bool]
    ) -> Iterable[StreamEvent]: ...


@dataclass(frozen=True)
class StreamEvent:
    """A piece of a streamed reply, or its end: ``finish`` is "end", "max_tokens" or None."""

    text: str = ""
    finish: str | None = None
    prompt_tokens: int | None = None  # given by the backend with the last event
    completion_tokens: int | None = None


class BackendError(DevmodeError):
    """The backend failed: unreachable URL, wrong key, server error. The message says which."""


class BackendTimeout(BackendError):
    """The backend sent nothing for longer than the timeout (a stalled server)."""


@dataclass(frozen=True)
class Reply:
    text: str
    stopped_by: str  # one of STOP_REASONS
    detail: str  # a sentence for a person: "stopped: max tokens (20)"
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token_s: float | None
    total_s: float
    masked: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """Nothing came back: the backend failed (API error) or stalled past the timeout."""
        return not self.text and self.stopped_by in ("api_error", "timeout")

    @property
    def tokens_per_s(self) -> float | None:
        if not self.completion_tokens or self.first_token_s is None:
            return None
        generating = self.total_s - self.first_token_s
        return self.completion_tokens / generating if generating > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "masked": list(self.masked), "tokens_per_s": self.tokens_per_s}


class ReplyStream:
    """One reply under ``limits``, as the text that may be shown, piece by piece; once the
    iteration ends, ``reply`` says what happened. Iterate it with ``st.write_stream`` or a loop.

    Refuses to start (``ChatInputError``) when the message itself holds a banned word. After
    that it never raises for a limit or a backend failure: the reply says what happened
    (``stopped_by``), with whatever text arrived before.
    """

    def __init__(self, backend: Backend, plan: ContextPlan, limits: ChatLimits):
        prompt = next(p.text for p in plan.parts if p.kind == "prompt")
        check_prompt(prompt, limits)
        self.backend, self.plan, self.limits = backend, plan, limits
        self.reply: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        limits = self.limits
        watcher = LimitWatcher(limits)
        start = time.perf_counter()
        first: float | None = None
        prompt_tokens = completion_tokens = None
        finish = None

        def timed_out() -> bool:
            return time.perf_counter() - start > limits.timeout_s

        def should_stop() -> bool:
            return watcher.stopped_by is not None or timed_out()

        events = iter(self.backend.stream(self.plan.messages(), limits, should_stop))
        try:
            for event in events:
                if event.text and first is None:
                    first = time.perf_counter() - start
                shown = watcher.feed(event.text)
                if shown:
                    yield shown
                prompt_tokens = event.prompt_tokens or prompt_tokens
                completion_tokens = event.completion_tokens or completion_tokens
                finish = event.finish or finish
                if timed_out():
                    watcher.stop("timeout", f"stopped: timeout ({limits.timeout_s:g} s)")
                if watcher.stopped_by:
                    break
        except BackendTimeout:
            watcher.stop("timeout", f"stopped: timeout ({limits.timeout_s:g} s)")
        except BackendError as e:
            watcher.stop("api_error", f"stopped: {self.backend.name} error: {e}")
        finally:
            close = getattr(events, "close", None)
            if close:
                close()  # a backend holding the model (or a connection) lets go of it now
        rest = watcher.finish()
        if rest:
            yield rest
        if finish == "max_tokens":
            watcher.stop("max_tokens", f"stopped: max tokens ({limits.max_tokens})")
        if timed_out():
            watcher.stop("timeout", f"stopped: timeout ({limits.timeout_s:g} s)")
        watcher.stop("end", "the model ended its reply")
        self.reply = Reply(
            watcher.text,
            watcher.stopped_by,
            watcher.detail,
            prompt_tokens,
            completion_tokens,
            first,
            time.perf_counter() - start,
            tuple(dict.fromkeys(watcher.masked)),
        )


def respond(
    backend: Backend,
    plan: ContextPlan,
    limits: ChatLimits,
    *,
    on_text: Callable[[str], None] | None = None,
) -> Reply:
    """Stream one reply under ``limits`` (see ``ReplyStream``); ``on_text`` sees each piece."""
    stream = ReplyStream(backend, plan, limits)
    for piece in stream:
        if on_text:
            on_text(piece)
    return stream.reply


def describe_reply(reply: Reply) -> str:
    """One line: which limit ended the reply, tokens, time to first token, latency, speed."""
    parts = [reply.detail]
    if reply.masked:
        parts.append("masked: " + ", ".join(repr(w) for w in reply.masked))
    if reply.prompt_tokens is not None:
        parts.append(f"prompt {reply.prompt_tokens} tokens")
    if reply.completion_tokens is not None:
        parts.append(f"completion {reply.completion_tokens} tokens")
    if reply.first_token_s is not None:
        parts.append(f"first token {reply.first_token_s:.2f} s")
    parts.append(f"total {reply.total_s:.2f} s")
    if reply.tokens_per_s:
        parts.append(f"{reply.tokens_per_s:.1f} tokens/s")
    return " · ".join(parts)


# ----------------------------------------------------------------------------------------------
# The limit bench: the same prompts under several settings, side by side


@dataclass(frozen=True)
class BenchVariant:
    """One column of the bench: a name, the limits, and optionally its own context budget."""

    name: str
    limits: ChatLimits
    budget_tokens: int | None = None


# Columns of a bench row, in the order a table shows them.
BENCH_COLUMNS = (
    "prompt",
    "variant",
    "stopped_by",
    "detail",
    "text",
    "prompt_tokens",
    "completion_tokens",
    "first_token_s",
    "total_s",
    "tokens_per_s",
)


def parse_variant(text: str, name: str | None = None) -> BenchVariant:
    """A variant from ``"max_tokens=20,banned=risk;loss,temperature=0,budget=512"``: fields of
    ``ChatLimits`` separated by commas, list items (stop, banned) by semicolons; ``budget`` is
    the context budget and ``name`` the column's label.
    """
    values: dict[str, Any] = {}
    label, budget = name, None
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ChatInputError(f"Expected field=value in {pair!r} (variant {text!r}).")
        if key == "name":
            label = value
        elif key == "budget":
            budget = _number(value, int, key)
        elif key in ("stop", "banned"):
            values[key] = tuple(v for v in value.split(";") if v)
        elif key in LIMIT_TYPES:
            values[key] = _limit_value(key, value)
        else:
            known = ", ".join([*LIMIT_TYPES, "budget", "name"])
            raise ChatInputError(f"{key!r} is not a limit. Known: {known}.")
    return BenchVariant(label or text or "defaults", ChatLimits(**values), budget)


def variant_from_row(row: dict[str, Any], defaults: ChatLimits) -> BenchVariant:
    """A variant from a table row (the page's editor): blank cells take ``defaults``; stop and
    banned are typed as ``stop_sequences_from_text`` and ``words_from_text`` read them."""

    def given(key: str) -> bool:
        value = row.get(key)
        return value is not None and value == value and str(value).strip() != ""  # NaN: blank

    values = defaults.to_dict()
    for key in LIMIT_TYPES.keys() - {"stop", "banned"}:
        if given(key):
            values[key] = _limit_value(key, row[key])
    if given("stop"):
        values["stop"] = stop_sequences_from_text(str(row["stop"]).replace(";", "\n"))
    if given("banned"):
        values["banned"] = words_from_text(str(row["banned"]).replace(";", ","))
    budget = int(row["budget_tokens"]) if given("budget_tokens") else None
    name = str(row["name"]).strip() if given("name") else "variant"
    return BenchVariant(name, ChatLimits.from_dict(values), budget)


# Each ChatLimits field's type, as written in the class ("int", "float", "int | None", ...).
LIMIT_TYPES = {f.name: str(f.type) for f in fields(ChatLimits)}


def _limit_value(key: str, value: Any):
    """A ChatLimits field's value from typed text or a table cell, by the field's type."""
    kind = LIMIT_TYPES[key]
    if kind == "str":
        return str(value)
    return _number(value, float if "float" in kind else int, key)


def _number(value: Any, kind: type, key: str):
    try:
        return kind(value)
    except ValueError:
        raise ChatInputError(f"{key} must be a number; found {value!r}.") from None


def run_bench(
    backend: Backend,
    settings: ChatSettings,
    prompts: Sequence[str],
    variants: Sequence[BenchVariant],
    *,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """Every prompt under every variant (each a fresh, one-message conversation with the
    settings' system prompt and pinned documents): one row each, with ``BENCH_COLUMNS``.

    A prompt a variant refuses (a banned word in it, too large for its budget) gets a row that
    says so (``stopped_by`` "refused" or "context_overflow") rather than stopping the bench.
    """
    if len(variants) < 1 or not any(p.strip() for p in prompts):
        raise ChatInputError("The bench needs at least one prompt and one variant.")
    rows = []
    for prompt in (p for p in prompts if p.strip()):
        for variant in variants:
            row: dict[str, Any] = dict.fromkeys(BENCH_COLUMNS)
            row.update(prompt=prompt, variant=variant.name, text="")
            try:
                plan = settings.plan(backend, [], prompt, variant.budget_tokens)
                reply = respond(backend, plan, variant.limits)
            except ContextOverflow as e:
                row.update(stopped_by="context_overflow", detail=str(e))
            except ChatInputError as e:
                row.update(stopped_by="refused", detail=str(e))
            else:
                figures = reply.to_dict()
                row.update({k: figures[k] for k in BENCH_COLUMNS if k in figures})
            rows.append(row)
            on_row(row)
    return rows
