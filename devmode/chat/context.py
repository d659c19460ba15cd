"""The context a chat request sends, assembled under a token budget: what must go in goes in,
the rest while it fits, and a plan that says what was kept, cut or dropped.

    plan = assemble_context(system, pinned, history, prompt, budget_tokens=512, count_tokens=n)
    plan.messages()     # chat messages, as sent
    plan.dropped        # the parts that did not fit (or were cut)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devmode.errors import DevmodeError


class ChatInputError(DevmodeError):
    """The prompt or the settings cannot be sent (empty prompt, banned word in it, bad limit)."""


class ContextOverflow(DevmodeError):
    """The parts that must be sent (system prompt and the new message) exceed the budget."""


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

    def describe(self) -> str:
        """'Context to send: 40 of 2048 tokens, 1 part(s) dropped or cut'."""
        text = f"Context to send: {self.used_tokens} of {self.budget_tokens} tokens"
        if self.dropped:
            text += f", {len(self.dropped)} part(s) dropped or cut"
        return text

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
    for turn in reversed(turns(history)):
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


def turns(history: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Group messages into turns: a user message with the replies that follow it."""
    turns: list[list[tuple[str, str]]] = []
    for role, text in history:
        if role == "user" or not turns:
            turns.append([])
        turns[-1].append((role, text))
    return turns
