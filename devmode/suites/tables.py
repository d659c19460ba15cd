"""A suite as the tables a page edits, and back: a table of prompts (id, text), a table of
cases (a column per variable), a table of variants (limits and backend) and a table of
assertions (the prompt each is for, or every prompt).

    tables = suite_tables(suite)                              # what the widgets start from
    suite = suite_from_tables(name, prompts, cases, variants, checks, settings, repeat=3)

Cells left blank take the settings' values; list cells (stop, banned, the values of
contains-any and the like) are separated by ``limits.LIST_SEPARATOR`` (``;``), and a variant's
limit cells are read by the limit bench's own reader (``limit_bench.variant_cells``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from devmode.chat.limit_bench import variant_cells
from devmode.chat.limits import LIST_SEPARATOR, ChatSettings, cell_from_list
from devmode.errors import DevmodeError
from devmode.suites.assertions import TYPES
from devmode.suites.noise import DEFAULT_SIGNIFICANCE
from devmode.suites.suite import VARIABLE, InvalidSuite, Suite

EVERY_PROMPT = "every prompt"
VARIANT_COLUMNS = (
    "name",
    "backend",
    "base_url",
    "model",
    "max_tokens",
    "temperature",
    "stop",
    "banned",
    "budget_tokens",
)
# The variant columns that are limits (read by ``variant_cells``); the others pick the backend.
VARIANT_LIMITS = ("max_tokens", "temperature", "stop", "banned", "budget_tokens")
CHECK_COLUMNS = ("prompt", "type", "value", "threshold", "which", "model")
# the cases' table: an id column, then a column per variable (a variable cannot hold a space)
CASE_ID = "case id"
NUMBER_COLUMNS = {"max_tokens", "temperature", "budget_tokens", "threshold"}
LIST_TYPES = {"contains-any", "icontains-any", "contains-all", "icontains-all"}
CHECK_TYPES = [*TYPES, *(f"not-{t}" for t in TYPES)]


def filled(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` with every one of ``columns``: blank text as '', blank numbers as None (so a
    table widget knows each column's type even when no row fills it)."""
    return [{c: row.get(c, None if c in NUMBER_COLUMNS else "") for c in columns} for row in rows]


def prompt_ids(prompts: Sequence[dict[str, Any]]) -> list[str]:
    """The ids typed in the prompts' table (an assertion can be for one of them)."""
    return [_text(row.get("id")) for row in prompts if _text(row.get("id"))]


def variables(prompts: Sequence[dict[str, Any]]) -> list[str]:
    """The variables the prompts' texts use, in order of first use."""
    text = "\n".join(_text(row.get("text"), strip=False) for row in prompts)
    return list(dict.fromkeys(a or b for a, b in VARIABLE.findall(text)))


def suite_tables(suite: Suite) -> dict[str, Any]:
    """The page's widgets' values for ``suite``."""
    defaults = suite.settings.limits
    variants = []
    for v in suite.variants:
        row: dict[str, Any] = {
            "name": v.name,
            "backend": v.backend.kind,
            "base_url": v.backend.base_url,
            "model": v.backend.model if v.backend.kind == "endpoint" else "",
            "budget_tokens": v.budget_tokens,
        }
        for key in ("max_tokens", "temperature"):
            row[key] = getattr(v.limits, key)
        row["stop"] = cell_from_list(v.limits.stop)
        row["banned"] = cell_from_list(v.limits.banned)
        variants.append(row)
    checks = [_check_row(EVERY_PROMPT, a) for a in suite.assertions]
    for prompt in suite.prompts:
        checks += [_check_row(prompt.id, a) for a in prompt.assertions]
    prompts = [{"id": p.id, "text": p.text} for p in suite.prompts]
    names = variables(prompts)
    return {
        "name": suite.name,
        "prompts": prompts,
        "cases": [
            {CASE_ID: case.id, **{k: case.vars.get(k, "") for k in names}}
            for case in suite.cases
            if case.vars
        ],
        "case_extras": case_extras(suite, names),
        "variants": variants,
        "checks": checks,
        "repeat": suite.repeat,
        "min_pass_rate": suite.min_pass_rate,
        "significance": suite.significance,
        "max_tokens": defaults.max_tokens,
    }


def case_extras(suite: Suite, shown: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What the tables cannot show, kept by case id: earlier turns, a case's own assertions,
    and values of variables no prompt uses (an assertion may)."""
    extras = {}
    for case, values in zip(suite.cases, suite.to_dict()["cases"], strict=True):
        extra = {k: v for k, v in values.items() if k in ("turns", "assert")}
        hidden = {k: v for k, v in case.vars.items() if k not in shown}
        if hidden:
            extra["vars"] = hidden
        if extra:
            extras[case.id] = extra
    return extras


def extras_text(extras: dict[str, dict[str, Any]]) -> str:
    """'Case bond holds 2 earlier turns: kept as they are; edit them in the suite's YAML.'"""
    return (
        _held(extras) + ": kept as they are while the case keeps its id; edit them in the "
        "suite's YAML and import it again."
    )


def _held(extras: dict[str, dict[str, Any]]) -> str:
    """'Case bond holds 2 earlier turns; case c2 holds values for expected'."""
    parts = []
    for case_id, extra in extras.items():
        held = []
        if extra.get("turns"):
            held.append(_count(len(extra["turns"]), "earlier turn"))
        if extra.get("assert"):
            held.append(_count(len(extra["assert"]), "assertion") + " of its own")
        if extra.get("vars"):
            held.append(f"values for {', '.join(extra['vars'])}")
        parts.append(f"case {case_id} holds {' and '.join(held)}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _check_row(prompt: str, assertion) -> dict[str, Any]:
    value = assertion.value
    if isinstance(value, list | tuple):
        value = LIST_SEPARATOR.join(map(str, value))
    elif isinstance(value, dict):
        value = json.dumps(value)
    return {
        "prompt": prompt,
        "type": assertion.name,
        "value": "" if value is None else str(value),
        "threshold": assertion.threshold,
        "which": assertion.which or "",
        "model": assertion.model or "",
    }


def suite_from_tables(
    name: str,
    prompts: Sequence[dict[str, Any]],
    cases: Sequence[dict[str, Any]],
    variants: Sequence[dict[str, Any]],
    checks: Sequence[dict[str, Any]],
    settings: ChatSettings,
    *,
    repeat: int = 1,
    min_pass_rate: float = 1.0,
    significance: float = DEFAULT_SIGNIFICANCE,
    case_extras: dict[str, dict[str, Any]] | None = None,
) -> Suite:
    """A suite from the page's widgets (rows as dicts; blank rows skipped). The settings give
    the system prompt, pinned context, budget, the limits blank cells take, and the backend
    of a variant whose backend cell is blank. ``case_extras``: each case id's earlier turns
    and own assertions, as ``suite_tables`` kept them."""
    if not name.strip():
        raise InvalidSuite("Give the suite a name: runs are kept under it.")
    prompts = [r for r in prompts if _text(r.get("text"))]
    values: dict[str, Any] = {
        "name": name.strip(),
        "system_prompt": settings.system_prompt,
        "pinned": list(settings.pinned),
        "budget_tokens": settings.budget_tokens,
        "limits": {k: v for k, v in settings.limits.to_dict().items()},
        "backend": settings.backend.to_dict(),
        "repeat": int(repeat),
        "min_pass_rate": float(min_pass_rate),
        "significance": float(significance),
        "prompts": [
            {"id": _text(row.get("id")) or f"p{i + 1}", "text": _text(row["text"], strip=False)}
            for i, row in enumerate(prompts)
        ],
        "cases": _cases(cases, case_extras or {}),
        "variants": [_variant(row, i) for i, row in enumerate(r for r in variants if _filled(r))],
    }
    ids = {p["id"] for p in values["prompts"]}
    for row in (r for r in checks if _filled(r)):
        target = _text(row.get("prompt")) or EVERY_PROMPT
        check = _check(row)
        if target == EVERY_PROMPT:
            values.setdefault("assert", []).append(check)
        elif target in ids:
            prompt = next(p for p in values["prompts"] if p["id"] == target)
            prompt.setdefault("assert", []).append(check)
        else:
            raise InvalidSuite(
                f"An assertion is for prompt {target!r}, which the suite does not have; expected "
                f"{EVERY_PROMPT} or one of the prompts' ids ({', '.join(sorted(ids))})."
            )
    return Suite.from_dict(values)


def _cases(
    rows: Sequence[dict[str, Any]], extras: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The cases' rows (an id, a value per variable) with the turns and assertions kept for
    their ids; without rows (the prompts use no variable), the cases that hold only those."""
    filled = [r for r in rows if _filled(r)]
    typed = {_text(r.get(CASE_ID)) for r in filled}
    fresh = (f"c{i}" for i in itertools.count(1) if f"c{i}" not in typed)
    cases = [
        {
            "id": _text(row.get(CASE_ID)) or next(fresh),  # a new row: an id no row has
            "vars": {k: _text(v) for k, v in row.items() if k != CASE_ID},
        }
        for row in filled
    ]
    if not cases:
        cases = [{"id": case_id, "vars": {}} for case_id in extras]
    lost = {k: v for k, v in extras.items() if k not in {c["id"] for c in cases}}
    if lost:
        raise InvalidSuite(
            f"{_held(lost)}, but no row of the cases' table has that id now. Give a row that "
            "id again, or edit the suite's YAML."
        )
    out = []
    for case in cases:
        extra = extras.get(case["id"], {})
        out.append({**case, **extra, "vars": {**extra.get("vars", {}), **case["vars"]}})
    return out


def _variant(row: dict[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(row.get("name")) or f"v{i + 1}"}
    kind = _text(row.get("backend"))
    if kind == "endpoint" or _text(row.get("base_url")):
        out["backend"] = {
            "kind": "endpoint",
            "base_url": _text(row.get("base_url")),
            "model": _text(row.get("model")) or "smollm2",
        }
    elif kind == "embedded":
        out["backend"] = "embedded"
    try:
        cells = variant_cells({k: row.get(k) for k in VARIANT_LIMITS})
    except DevmodeError as e:
        raise InvalidSuite(f"Variant {out['name']}: {e}") from None
    out.update(
        {key: list(value) if isinstance(value, tuple) else value for key, value in cells.items()}
    )
    return out


def _check(row: dict[str, Any]) -> dict[str, Any]:
    kind = _text(row.get("type"))
    base = kind.removeprefix("not-")
    value: Any = _text(row.get("value"), strip=False) or None
    if value is not None and base in LIST_TYPES:
        value = [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
    elif value is not None and base == "is-json":
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidSuite(
                f"The schema of an is-json assertion is not JSON ({e.msg}); expected an object "
                'such as {"type": "object", "required": ["ticker"]}, or nothing.'
            ) from None
    check: dict[str, Any] = {"type": kind, "value": value}
    if _text(row.get("threshold")):
        check["threshold"] = row["threshold"]
    if _text(row.get("which"), strip=False):
        check["which"] = _text(row["which"], strip=False).replace("\\n", "\n")
    if _text(row.get("model")):
        check["model"] = _text(row["model"])
    return check


def _text(value: Any, strip: bool = True) -> str:
    if value is None or value != value:  # NaN: a blank cell of a DataFrame
        return ""
    text = str(value)
    return text.strip() if strip else text


def _filled(row: dict[str, Any]) -> bool:
    return any(_text(v) for v in row.values())


def form_values(tables: dict[str, Any]) -> dict[str, Any]:
    """The suite's name and run options, as the page's plain widgets hold them."""
    return {k: tables[k] for k in ("name", "repeat", "min_pass_rate", "significance")}


def starter_tables() -> dict[str, Any]:
    """A new suite on the page: two companies, the embedded model greedy and cut at a full
    stop, two checks (no promises; the reply ended by itself or at the stop, not cut short)."""
    return {
        "name": "",
        "prompts": [{"id": "p1", "text": "In one sentence, what does {company} do?"}],
        "cases": [{"company": "Apple"}, {"company": "JPMorgan"}],
        "variants": [
            {"name": "embedded", "backend": "embedded", "temperature": 0.0},  # max tokens: left
            {
                "name": "one sentence",
                "backend": "embedded",
                "max_tokens": 48,
                "temperature": 0.0,
                "stop": ".",
            },
        ],
        "checks": [
            {"prompt": EVERY_PROMPT, "type": "not-icontains", "value": "guarantee"},
            {"prompt": EVERY_PROMPT, "type": "finish-reason", "value": "stop"},
        ],
        "case_extras": {},
        "repeat": 1,
        "min_pass_rate": 1.0,
        "significance": DEFAULT_SIGNIFICANCE,
    }
