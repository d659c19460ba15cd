"""The Suites page's helpers: a suite grid's cell colours."""

from __future__ import annotations

from typing import Any

# A suite grid's cell colours: pass green, fail red, error or not run amber.
VERDICT_COLOURS = {"pass": "#e6f4ea", "fail": "#fce8e6", "error": "#fef7e0", "not": "#fef7e0"}


def verdict_colour(value: Any) -> str:
    """CSS for one cell of ``reports.grid`` ('fail 1/3' is a fail)."""
    word = str(value).split(" ")[0]
    colour = VERDICT_COLOURS.get(word)
    return f"background-color: {colour}" if colour else ""
