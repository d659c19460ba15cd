"""What one poll of a source found, before any of it is stored: rows with their keys, grouped by
where they came from (a feed, or each file of a folder), and what to remember for next time.

    batch = feeds.fetch_feed(url, state)       # one group: the feed's items
    batch = folders.scan_folder(path, state)   # a group per new or changed file

``sources.poll_source`` stores a batch in one transaction; a group the dataset cannot take (a
file without its text column) is refused on its own, by name, and the others are stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from devmode.data import ingest
from devmode.errors import DevmodeError


class PollFailed(DevmodeError):
    """A poll found nothing it could use (404, timeout, not a feed); recorded, then backed off."""


@dataclass
class Group:
    """Rows from one place: a feed, or one file of a watched folder."""

    name: str  # what a note calls it: the file's name, or the feed's masked address
    columns: list[str]  # of a dataset this group would create
    mapping: ingest.ColumnMapping
    items: list[tuple[str, dict[str, Any]]]  # (key, row)


@dataclass
class Batch:
    groups: list[Group]
    state: dict[str, Any]
    title: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seen(self) -> int:
        """Items or rows read, new or not."""
        return sum(len(group.items) for group in self.groups)


def item_key(guid: str | None, text: str, date: Any) -> str:
    """An item's identity: its guid or link, else its normalised text and date."""
    if guid and str(guid).strip():
        return "id:" + str(guid).strip()
    normalised = " ".join(str(text).lower().split())
    return "text:" + hashlib.sha1(f"{normalised}\x1f{date or ''}".encode()).hexdigest()


def plural(n: int, word: str) -> str:
    """'1 item', '3 items'."""
    return f"{n:,} {word}{'s' * (n != 1)}"
