"""The context a chat request sends, assembled under a token budget: what must go in goes in,
the rest while it fits, and a plan that says what was kept, cut or dropped.

    plan = assemble_context(system, pinned, history, prompt, budget_tokens=512, count_tokens=n)
    plan.messages()     # chat messages, as sent
    plan.dropped        # the parts that did not fit (or were cut)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
class TemplateCosts:
    """What a model's chat template adds around the texts, in tokens, measured from the
    template itself (``EmbeddedBackend.template_costs``): with these a plan's count is the
    exact length of the prompt the model reads."""

    per_role: Mapping[
        str, int
    ]  # around a message's text, by role: <|im_start|>user\n ... <|im_end|>\n
    reply_prefix: int  # after the last message: <|im_start|>assistant\n
    separator: int  # between the system prompt and pinned documents ("\n\n")
    default_system: int  # a system message the template adds when there is none


# Without a template to measure (an endpoint): the usual per-message estimate.
ESTIMATED_OVERHEAD = 4


@dataclass(frozen=True)
class ContextPlan:
    """The prompt as it will be sent, part by part, and what had to go to fit the budget."""

    parts: list[ContextPart]
    budget_tokens: int
    fixed_tokens: int = 0  # the template's own: the reply's prefix, a default system message
    exact: bool = False  # counted through the model's own tokenizer and chat template

    @property
    def used_tokens(self) -> int:
        return self.fixed_tokens + sum(p.tokens for p in self.parts if p.status != "dropped")

    def describe(self) -> str:
        """'Context to send: 40 of 2048 tokens (exact), 1 part(s) dropped or cut'."""
        text = (
            f"Context to send: {self.used_tokens} of {self.budget_tokens} tokens "
            f"({'exact' if self.exact else 'estimated'})"
        )
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
    message_overhead: int = ESTIMATED_OVERHEAD,
    costs: TemplateCosts | None = None,
) -> ContextPlan:
    """Fit the context into ``budget_tokens``: what must go, goes in; the rest while it fits.

    Priority: the system prompt and the new message always (else ``ContextOverflow``); then the
    pinned documents in order (the first that does not fit is cut to the room left, when
    ``truncate`` is given and at least 16 tokens are left, and the later ones dropped); then the
    conversation, newest turn first, whole turns only: the oldest turns are dropped first.

    :param history: ``(role, text)`` pairs, oldest first, role "user" or "assistant"
    :param count_tokens: the model's tokenizer, as a count; each message also costs
        ``message_overhead`` tokens of chat template (an estimate)
    :param costs: the template's exact costs, when the model's template is known: then
        ``message_overhead`` is not used and the plan is exact
    """
    if not prompt.strip():
        raise ChatInputError("The message is empty. Type something to send.")
    if budget_tokens < 16:
        raise ChatInputError(
            f"The context budget must be at least 16 tokens; found {budget_tokens}."
        )

    # joined into the system message after the system prompt: a separator, no message of its own
    joined = costs.separator if costs and system else 0
    fixed = costs.reply_prefix + (0 if system else costs.default_system) if costs else 0

    def cost(text: str, role: str) -> int:
        return count_tokens(text) + (costs.per_role[role] if costs else message_overhead)

    system_part = ContextPart(
        "system", "system", system, cost(system, "system") if system else 0, "kept"
    )
    prompt_part = ContextPart("prompt", "user", prompt, cost(prompt, "user"), "kept")
    room = budget_tokens - system_part.tokens - prompt_part.tokens - fixed
    if room < 0:
        raise ContextOverflow(
            f"The system prompt ({system_part.tokens} tokens) and the message "
            f"({prompt_part.tokens} tokens) need {budget_tokens - room} tokens with the chat "
            f"template's own, more than the whole context budget of {budget_tokens}. Raise the "
            "budget or shorten them."
        )
    pinned_parts = []
    for text in pinned:
        tokens = count_tokens(text) + joined
        if tokens <= room:
            pinned_parts.append(ContextPart("pinned", "system", text, tokens, "kept"))
            room -= tokens
        elif truncate and room >= 16:
            cut = truncate(text, room - joined)
            pinned_parts.append(
                ContextPart("pinned", "system", cut, count_tokens(cut) + joined, "truncated")
            )
            room -= pinned_parts[-1].tokens
        else:
            pinned_parts.append(ContextPart("pinned", "system", text, tokens, "dropped"))
    history_parts: list[ContextPart] = []
    full = True
    for turn in reversed(turns(history)):
        tokens = sum(cost(text, role) for role, text in turn)
        status = "kept" if full and tokens <= room else "dropped"
        if status == "kept":
            room -= tokens
        else:
            full = False  # once a turn is dropped, every older turn goes too
        history_parts[:0] = [ContextPart("history", r, t, cost(t, r), status) for r, t in turn]
    kept_pinned = sum(p.status != "dropped" for p in pinned_parts)
    if costs and not system and kept_pinned:
        # the pinned documents make the system message: the template adds no default one
        fixed = costs.reply_prefix + costs.per_role["system"] + costs.separator * (kept_pinned - 1)
    return ContextPlan(
        [system_part, *pinned_parts, *history_parts, prompt_part],
        budget_tokens,
        fixed_tokens=fixed,
        exact=costs is not None,
    )


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
