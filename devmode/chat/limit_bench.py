"""The limit bench: the same prompts under several limits, side by side, one row per cell.

    variants = [parse_variant("name=short,max_tokens=20"), parse_variant("banned=risk;loss")]
    rows = run_bench(backend, settings, ["What is a bond?"], variants, on_row=print)

Each cell is a fresh one-message conversation with the settings' system prompt and pinned
documents; a prompt a variant refuses gets a row saying so instead of stopping the bench.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devmode.chat.context import ChatInputError, ContextOverflow
from devmode.chat.limits import ChatLimits, ChatSettings, list_from_cell
from devmode.chat.replies import Backend, respond

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
# The page's starting table of variants: a short limit, banned words, a stop sequence.
DEFAULT_PROMPTS = "What is a bond?\nName one risk of holding long-dated bonds."
DEFAULT_VARIANT_ROWS = (
    {"name": "short", "max_tokens": 20, "temperature": 0.0, "banned": "", "stop": ""},
    {"name": "no rates", "max_tokens": 80, "temperature": 0.0, "banned": "rate;rates", "stop": ""},
    {"name": "one sentence", "max_tokens": 80, "temperature": 0.0, "banned": "", "stop": "."},
)


@dataclass(frozen=True)
class BenchVariant:
    """One column of the bench: a name, the limits, and optionally its own context budget."""

    name: str
    limits: ChatLimits
    budget_tokens: int | None = None


def variant_cells(row: dict[str, Any]) -> dict[str, Any]:
    """The one reader of a variant's cells (a bench row, a --variant, a suite's variant row): the
    settings given, typed: ``name``, ``budget_tokens`` and fields of ``ChatLimits``; stop and
    banned are lists (``limits.LIST_SEPARATOR``). Blank cells are left out: they take the
    defaults. Other columns (a suite variant's backend) are the caller's."""
    values: dict[str, Any] = {}
    limit_names = {spec.name for spec in ChatLimits.specs()}
    for key, value in row.items():
        if value is None or value != value or str(value).strip() == "":  # NaN: a blank cell
            continue
        if key in ("stop", "banned"):
            values[key] = list_from_cell(value, strip=key == "banned")
        elif key in limit_names:
            values.update(ChatLimits.parse_values({key: value}))
        elif key == "budget_tokens":
            values.update(ChatSettings.parse_values({key: value}))
        elif key == "name":
            values["name"] = str(value).strip()
    return values


def variant_from_row(row: dict[str, Any], defaults: ChatLimits) -> BenchVariant:
    """A variant from a table row (the page's editor): blank cells take ``defaults``."""
    values = variant_cells(row)
    name = values.pop("name", "variant")
    budget = values.pop("budget_tokens", None)
    return BenchVariant(name, ChatLimits.from_dict({**defaults.to_dict(), **values}), budget)


def parse_variant(text: str) -> BenchVariant:
    """A variant from ``"name=short,max_tokens=20,banned=risk;loss,budget=512"`` (``chat-bench
    --variant``): the cells of a row written as field=value, separated by commas; ``budget`` is
    the context budget. Unset fields take the limits' defaults."""
    row: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key = {"budget": "budget_tokens"}.get(key.strip(), key.strip())
        if not sep:
            raise ChatInputError(f"Expected field=value in {pair!r} (variant {text!r}).")
        if key not in ("name", "budget_tokens"):
            ChatLimits.parse_values({key: value})  # an unknown field is refused, with the known
        row[key] = value
    return variant_from_row({"name": text or "defaults", **row}, ChatLimits())


def variants_from_table(table: Any, defaults: ChatLimits) -> list[BenchVariant]:
    """The variants of an edited table (a DataFrame or a list of row dicts); rows left wholly
    blank are skipped."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    return [
        variant_from_row(row, defaults)
        for row in rows
        if any(str(v).strip() not in ("", "nan", "None") for v in row.values())
    ]


def prompts_from_text(text: str) -> list[str]:
    """The prompts typed one per line (blank lines skipped)."""
    return [line for line in text.splitlines() if line.strip()]


def run_bench(
    backend: Backend,
    settings: ChatSettings,
    prompts: Sequence[str],
    variants: Sequence[BenchVariant],
    *,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
    on_progress: Callable[[float, str], None] = lambda fraction, text: None,
) -> list[dict[str, Any]]:
    """Every prompt under every variant (each a fresh, one-message conversation with the
    settings' system prompt and pinned documents): one row each, with ``BENCH_COLUMNS``.

    A prompt a variant refuses (a banned word in it, too large for its budget) gets a row that
    says so (``stopped_by`` "refused" or "context_overflow") rather than stopping the bench.

    :param on_row: called with each row as it is done
    :param on_progress: called after each row with the share done and "3 of 6 replies"
    """
    prompts = [p for p in prompts if p.strip()]
    if len(variants) < 1 or not prompts:
        raise ChatInputError("The bench needs at least one prompt and one variant.")
    total = len(prompts) * len(variants)
    rows = []
    for prompt in prompts:
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
            on_progress(len(rows) / total, f"{len(rows)} of {total} replies")
    return rows


def rows_as_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The bench's rows as CSV text, columns in ``BENCH_COLUMNS`` order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, BENCH_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
