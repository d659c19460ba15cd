"""The context under a budget: what goes first, what is cut, what is refused."""

import pytest

from devmode.chat import replies
from devmode.chat.context import ChatInputError, ContextOverflow, assemble_context
from devmode.chat.limits import ChatLimits


def words(text: str) -> int:
    return len(text.split())


def test_the_oldest_turns_go_first_and_a_pinned_document_is_cut_to_fit():
    history = [
        ("user", "one two"),
        ("assistant", "three four five"),
        ("user", "six"),
        ("assistant", "seven"),
    ]
    plan = assemble_context(
        "be brief",
        ["a b c d e f g h i j k l m n o p q r s t u v w x y z"],
        history,
        "new question here",
        budget_tokens=45,
        count_tokens=words,
        truncate=lambda text, n: " ".join(text.split()[:n]),
        message_overhead=4,
    )
    status = [(p.kind, p.status) for p in plan.parts]
    # system 2+4, prompt 3+4 -> 32 left; the document (26) fits; the newest turn (1+4 + 1+4) does
    # not fit in the 6 left, so both turns are dropped
    assert status == [
        ("system", "kept"),
        ("pinned", "kept"),
        ("history", "dropped"),
        ("history", "dropped"),
        ("history", "dropped"),
        ("history", "dropped"),
        ("prompt", "kept"),
    ]
    assert plan.used_tokens == 6 + 26 + 7 <= 45
    roomier = assemble_context(
        "be brief",
        ["a " * 80],
        history,
        "q",
        budget_tokens=60,
        count_tokens=words,
        truncate=lambda text, n: " ".join(text.split()[:n]),
    )
    pinned = next(p for p in roomier.parts if p.kind == "pinned")
    assert pinned.status == "truncated" and pinned.tokens == 60 - 6 - 5
    assert roomier.messages()[0]["role"] == "system" and roomier.messages()[-1]["content"] == "q"


def test_newest_turns_are_kept_whole():
    history = [
        ("user", "old " * 10),
        ("assistant", "old"),
        ("user", "recent"),
        ("assistant", "reply"),
    ]
    plan = assemble_context("", [], history, "now", budget_tokens=30, count_tokens=words)
    kept = [p.text for p in plan.parts if p.kind == "history" and p.status == "kept"]
    assert kept == ["recent", "reply"]
    assert [m["role"] for m in plan.messages()] == ["user", "assistant", "user"]


def test_what_cannot_be_sent_is_refused_before_sending():
    with pytest.raises(ChatInputError, match="empty"):
        assemble_context("s", [], [], "   ", budget_tokens=100, count_tokens=words)
    with pytest.raises(ContextOverflow, match="more than the whole context budget of 20"):
        assemble_context("s", [], [], "w " * 30, budget_tokens=20, count_tokens=words)
    with pytest.raises(ChatInputError, match="banned word 'guarantee'"):
        replies.check_prompt("Do you Guarantee returns?", ChatLimits(banned=("guarantee",)))
    with pytest.raises(ChatInputError, match="top_p must be"):
        ChatLimits(top_p=0)
