"""Each column's role in a new dataset, suggested from its name and its values (every suggestion
can be overridden).

    mapping = suggest_mapping(upload.columns, upload.preview(200))   # text=headline, date=date, ...
"""

from __future__ import annotations

import re
from typing import Any

from devmode.data.ingest import ROLES, ColumnMapping

# Column names that suggest a role, in order of preference (compared case-insensitively).
_ROLE_NAMES = {
    "text": (
        "text",
        "sentence",
        "headline",
        "title",
        "content",
        "body",
        "tweet",
        "message",
        "review",
        "news",
        "document",
        "summary",
    ),
    "label": (
        "label",
        "labels",
        "sentiment",
        "class",
        "category",
        "topic",
        "target",
        "y",
        "tag",
        "polarity",
    ),
    "date": (
        "date",
        "timestamp",
        "datetime",
        "time",
        "published",
        "published_at",
        "created_at",
        "day",
        "publish_date",
        "pub_date",
    ),
    "ticker": ("ticker", "symbol", "stock", "tickers", "company", "instrument"),
}
_DATE_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def suggest_mapping(columns: list[str], rows: list[dict[str, Any]]) -> ColumnMapping:
    """Guess each column's role from its name, then from its values.

    Names win ('headline' is text, 'symbol' is ticker); otherwise the text is the string column
    with the longest values, the label a column with few distinct values, the date one whose
    values look like ISO dates. Every guess can be overridden.
    """
    taken: set[str] = set()
    chosen: dict[str, str | None] = {}
    by_lower = {c.lower().strip(): c for c in columns}
    for role in ROLES:
        chosen[role] = next(
            (by_lower[n] for n in _ROLE_NAMES[role] if n in by_lower and by_lower[n] not in taken),
            None,
        )
        if chosen[role]:
            taken.add(chosen[role])

    def values(column):
        return [r.get(column) for r in rows if r.get(column) not in (None, "")]

    free = [c for c in columns if c not in taken]
    if chosen["date"] is None:
        for c in free:
            vals = values(c)
            if vals and all(isinstance(v, str) and _DATE_LIKE.match(v.strip()) for v in vals):
                chosen["date"] = c
                taken.add(c)
                break
    free = [c for c in columns if c not in taken]
    if chosen["text"] is None:
        lengths = {c: _mean_length(values(c)) for c in free}
        best = max(free, key=lambda c: lengths[c], default=None)
        if best is not None and lengths[best] >= 15:
            chosen["text"] = best
            taken.add(best)
    free = [c for c in columns if c not in taken]
    if chosen["label"] is None and rows:
        for c in free:
            vals = values(c)
            distinct = {str(v) for v in vals}
            if (
                vals
                and 2 <= len(distinct) <= max(2, min(50, len(vals) // 2))
                and _mean_length(vals) < 40
            ):
                chosen["label"] = c
                break
    return ColumnMapping(**chosen)


def column_named(columns: list[str], role: str, names: tuple[str, ...] = ()) -> str | None:
    """The first of ``columns`` whose name suggests ``role`` (or is one of ``names``),
    compared case-insensitively; None when none does."""
    by_lower = {c.lower().strip(): c for c in columns}
    return next((by_lower[n] for n in (*names, *_ROLE_NAMES.get(role, ())) if n in by_lower), None)


def _mean_length(vals: list[Any]) -> float:
    strings = [v for v in vals if isinstance(v, str)]
    return sum(map(len, strings)) / len(strings) if strings else 0.0
