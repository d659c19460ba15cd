"""Limits on a streamed reply: stop sequences and banned words across pieces."""

import pytest

from devmode.chat.limits import ChatLimits
from devmode.chat.replies import LimitWatcher


def stream_through(watcher: LimitWatcher, pieces: list[str]) -> str:
    shown = "".join(watcher.feed(p) for p in pieces)
    return shown + watcher.finish()


def test_a_stop_sequence_split_across_pieces_is_never_shown():
    watcher = LimitWatcher(ChatLimits(stop=("\n\nQ:",)))
    shown = stream_through(watcher, ["Rates rose.", "\n", "\nQ", ": next?"])
    assert shown == "Rates rose." and watcher.stopped_by == "stop_sequence"
    assert watcher.detail == "stopped: stop sequence '\\n\\nQ:'"


def test_banned_words_block_or_mask_whole_words_only():
    block = LimitWatcher(ChatLimits(banned=("guaranteed",)))
    assert stream_through(block, ["Returns are guaran", "teed to rise"]) == "Returns are "
    assert block.stopped_by == "banned_word" and "'guaranteed'" in block.detail
    mask = LimitWatcher(ChatLimits(banned=("rate",), banned_action="mask"))
    shown = stream_through(mask, ["The rate and the rates ", "generate a Rate."])
    assert shown == "The ████ and the rates generate a ████." and mask.stopped_by is None
    assert mask.masked == ["rate", "rate"]


@pytest.mark.parametrize("action", ["block", "mask"])
def test_a_banned_word_inside_a_longer_word_is_not_caught_across_pieces(action):
    """ "un" is shown before "guaranteed" arrives: the word is "unguaranteed", not banned."""
    watcher = LimitWatcher(ChatLimits(banned=("guaranteed",), banned_action=action))
    shown = stream_through(watcher, ["Returns un", "guaranteed", " here, rates"])
    assert shown == "Returns unguaranteed here, rates"
    assert watcher.stopped_by is None and watcher.masked == []


def test_a_word_at_the_end_of_a_piece_waits_for_the_next_character():
    watcher = LimitWatcher(ChatLimits(banned=("rate",), banned_action="mask"))
    shown = stream_through(watcher, ["The long ", "rate", "s rose; the rate", " fell"])
    assert shown == "The long rates rose; the ████ fell" and watcher.masked == ["rate"]
