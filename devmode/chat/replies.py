"""One reply under its limits, from any backend: the limit watcher that holds back text that
could be a stop sequence or a banned word, the stream a page shows, and the report of which
limit ended it.

    reply = respond(backend, plan, limits, on_text=print)
    reply.stopped_by, reply.detail      # "max_tokens", "stopped: max tokens (20)"
    describe_reply(reply)               # the one line under each reply

Stop sequences and banned words are enforced here, on the streamed text, the same way for every
backend: a stop sequence ends the reply before it; a banned word either ends the reply before it
(``block``) or is masked and the reply goes on (``mask``). Text that could be the start of a stop
sequence or banned word is held back until it is known not to be, so it is never shown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from devmode.chat.context import ChatInputError, ContextPlan
from devmode.chat.limits import ChatLimits
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
MASK = "█"


@dataclass
class LimitWatcher:
    """Feed it the reply's text as it streams; it says what may be shown and when to stop."""

    limits: ChatLimits
    text: str = ""  # everything shown so far (masked)
    stopped_by: str | None = None
    detail: str = ""
    which: str | None = None  # the stop sequence or banned word that ended the reply
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

    def stop(self, reason: str, detail: str, which: str | None = None) -> None:
        if not self.stopped_by:
            self.stopped_by, self.detail, self.which = reason, detail, which

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
            self.stop(reason, f"stopped: {label} {what!r}", what)
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


class BannedPrompt(ChatInputError):
    """The message itself holds a banned word."""


def check_prompt(prompt: str, limits: ChatLimits) -> None:
    """Refuse a prompt that itself holds a banned word (the reply would be judged by it)."""
    for word in limits.banned:
        if _whole_word(word).search(prompt):
            raise BannedPrompt(
                f"The message contains the banned word {word!r}. Remove it from the message, or "
                "take it off the banned list."
            )


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
    which: str | None = None  # the stop sequence or banned word, when one ended it
    engine: str | None = None  # how the embedded model ran: weights and attention picked

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
        self._abandoned = False

    def abandon(self) -> None:
        """Stop generating at the next token: whoever reads the reply has gone away (a client
        that closed its connection). The model is free for the next reply soon after."""
        self._abandoned = True

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
            return watcher.stopped_by is not None or self._abandoned or timed_out()

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
            watcher.which,
            getattr(self.backend, "engine", None),
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
    if reply.engine:
        parts.append(reply.engine)
    return " · ".join(parts)
