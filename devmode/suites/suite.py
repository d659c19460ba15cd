"""A suite: prompts with variables, a table of cases that fill them, variants (limits and
backend) to run each under, assertions, and repeats for sampled settings.

    suite = Suite.from_dict({"prompts": ["What is a {thing}?"], "cases": [{"vars": {"thing": "bond"}}],
                             "variants": [{"name": "short", "max_tokens": 20}],
                             "assert": [{"type": "stopped-by", "value": "max_tokens"}]})
    for cell in suite.cells(): ...              # prompt x case x variant, each ``repeat`` times

A cell is one prompt, filled from one case, under one variant; its key (``prompt/case/variant``)
is what two runs of a suite are compared by. Everything is checked when the suite is built:
unknown fields, a variable with no value, duplicate names, a bad limit, an assertion that
cannot work; ``where`` in each message names the place (a file's line when read from one).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devmode.chat.limits import BackendSpec, ChatLimits, ChatSettings
from devmode.errors import DevmodeError
from devmode.specs import Settings, setting
from devmode.suites.assertions import Assertion
from devmode.suites.noise import DEFAULT_SIGNIFICANCE

# {name} or promptfoo's {{ name }}: a variable filled from a case.
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}|\{([A-Za-z_]\w*)\}")
SUITE_FIELDS = (
    "name",
    "description",
    "system_prompt",
    "pinned",
    "budget_tokens",
    "limits",
    "backend",
    "repeat",
    "min_pass_rate",
    "significance",
    "grader",
    "prompts",
    "cases",
    "variants",
    "assert",
)


class InvalidSuite(DevmodeError):
    """A suite that cannot run: the message names the field (and the file's line)."""


@dataclass(frozen=True)
class RunOptions(Settings):
    """How a suite's cells are judged: replies per cell, and the share that must pass."""

    error = InvalidSuite

    repeat: int = setting(
        1,
        "Replies per cell: more than one for sampled settings (temperature above 0), so a cell "
        "reads as a pass rate, not one lucky answer.",
        minimum=1,
        maximum=100,
        label="Repeats per cell",
    )
    min_pass_rate: float = setting(
        1.0,
        "The share of a cell's replies that must pass for the cell to pass.",
        above=0,
        maximum=1,
        label="Pass rate a cell needs",
        step=0.05,
    )
    significance: float = setting(
        DEFAULT_SIGNIFICANCE,
        "Comparing two runs, a cell has regressed when its pass rate fell at this level "
        "(Fisher's exact test, one-sided, Benjamini-Hochberg over the cells compared).",
        above=0,
        below=1,
        label="Significance of a regression",
        step=0.01,
    )


# The roles of a case's earlier turns.
TURN_ROLES = ("user", "assistant")
# A suite file's keys that are RunOptions.
RUN_FIELDS = ("repeat", "min_pass_rate", "significance")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    assertions: tuple[Assertion, ...] = ()


@dataclass(frozen=True)
class Case:
    id: str
    vars: Mapping[str, str]
    assertions: tuple[Assertion, ...] = ()
    # earlier turns, (role, content) oldest first, before the prompt: planned as a chat's history
    turns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Variant:
    """One column of the suite: a name, the limits, the backend and optionally a budget."""

    name: str
    limits: ChatLimits
    backend: BackendSpec
    budget_tokens: int | None = None


@dataclass(frozen=True)
class Cell:
    prompt: Prompt
    case: Case
    variant: Variant
    text: str  # the prompt, its variables filled

    @property
    def key(self) -> str:
        return f"{self.prompt.id}/{self.case.id}/{self.variant.name}"


@dataclass(frozen=True)
class Grader:
    """The endpoint that grades ``llm-rubric`` assertions."""

    base_url: str
    model: str
    api_key_name: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: tuple[Prompt, ...]
    variants: tuple[Variant, ...]
    cases: tuple[Case, ...] = (Case("default", {}),)
    assertions: tuple[Assertion, ...] = ()
    description: str = ""
    settings: ChatSettings = field(default_factory=ChatSettings)  # system prompt, pinned, budget
    repeat: int = 1
    min_pass_rate: float = 1.0  # a cell passes when this share of its repeats pass
    significance: float = DEFAULT_SIGNIFICANCE  # the level at which a cell has regressed
    grader: Grader | None = None

    def cells(self) -> Iterator[Cell]:
        for prompt in self.prompts:
            for case in self.cases:
                text = fill(prompt.text, case.vars, f"case {case.id} (for prompt {prompt.id})")
                for variant in self.variants:
                    yield Cell(prompt, case, variant, text)

    @property
    def size(self) -> int:
        """Replies one run asks for: cells x repeats."""
        return len(self.prompts) * len(self.cases) * len(self.variants) * self.repeat

    def assertions_for(self, cell: Cell) -> tuple[Assertion, ...]:
        """The suite's, the prompt's and the case's assertions, their texts filled from the
        case's variables (``icontains: "{company}"``; braces naming no variable stay)."""
        return tuple(
            dataclasses.replace(a, value=_fill_known(a.value, cell.case.vars))
            for a in self.assertions + cell.prompt.assertions + cell.case.assertions
        )

    # -- as plain data (a suite file's fields; what is stored) ---------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, name: str = "", lines=None) -> Suite:
        """A suite from a file's fields (see ``files.py`` for the format). ``lines`` maps a
        field's path (``("prompts", 2)``) to its line in the file, for messages."""
        return _Reader(lines or {}).suite(values, name)

    def to_dict(self) -> dict[str, Any]:
        """Every field, explicit: ``Suite.from_dict(s.to_dict()) == s``."""
        defaults = self.settings.limits.to_dict()
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["system_prompt"] = self.settings.system_prompt
        if self.settings.pinned:
            out["pinned"] = list(self.settings.pinned)
        out["budget_tokens"] = self.settings.budget_tokens
        out["limits"] = _lists(defaults)
        out["backend"] = self.settings.backend.to_dict()
        out["repeat"] = self.repeat
        out["min_pass_rate"] = self.min_pass_rate
        if self.significance != DEFAULT_SIGNIFICANCE:
            out["significance"] = self.significance
        if self.grader:
            out["grader"] = dict(vars(self.grader))
        out["prompts"] = [
            {"id": p.id, "text": p.text, **_assert_list(p.assertions)} for p in self.prompts
        ]
        out["cases"] = [
            {
                "id": c.id,
                "vars": dict(c.vars),
                **({"turns": [{"role": r, "content": t} for r, t in c.turns]} if c.turns else {}),
                **_assert_list(c.assertions),
            }
            for c in self.cases
        ]
        out["variants"] = []
        for v in self.variants:
            row: dict[str, Any] = {"name": v.name}
            row.update(
                {k: x for k, x in _lists(v.limits.to_dict()).items() if _lists(defaults)[k] != x}
            )
            if v.backend != self.settings.backend:
                row["backend"] = v.backend.to_dict()
            if v.budget_tokens is not None:
                row["budget_tokens"] = v.budget_tokens
            out["variants"].append(row)
        out.update(_assert_list(self.assertions))
        return out

    def checked_by(self, other: Suite) -> Suite:
        """This suite's prompts, cases and variants (those ``other`` has too, by id and name),
        with ``other``'s assertions, pass rate, significance and grader: what a rescore of a
        run of this suite by ``other`` checked. Its settings stay the ones the replies came
        from."""
        mine, theirs = self.to_dict(), other.to_dict()
        texts = {p["id"]: p["text"] for p in theirs["prompts"]}
        for prompt in mine["prompts"]:
            if texts.get(prompt["id"], prompt["text"]) != prompt["text"]:
                raise InvalidSuite(
                    f"Prompt {prompt['id']} of {other.name!r} reads {texts[prompt['id']]!r}; the "
                    f"run's replies answer {prompt['text']!r}. Rescore with the run's prompts (the "
                    "same ids and texts), or run the suite again."
                )
        kept = {"name": mine["name"]}
        kept.update({k: v for k, v in mine.items() if k not in (*_CHECKS, "name")})
        kept.update({k: theirs[k] for k in _CHECKS if k in theirs})
        for part in ("prompts", "cases"):  # each by id, with the other suite's assertions
            checks = {item["id"]: item.get("assert") for item in theirs[part]}
            kept[part] = [
                {k: v for k, v in item.items() if k != "assert"}
                | ({"assert": checks[item["id"]]} if checks[item["id"]] else {})
                for item in mine[part]
                if item["id"] in checks
            ]
        names = {v["name"] for v in theirs["variants"]}
        kept["variants"] = [v for v in mine["variants"] if v["name"] in names]
        if not (kept["prompts"] and kept["cases"] and kept["variants"]):
            raise InvalidSuite(
                f"Suite {other.name!r} shares no cell with the run of {self.name!r}: it has "
                f"{len(kept['prompts'])} of its prompts, {len(kept['cases'])} of its cases and "
                f"{len(kept['variants'])} of its variants (matched by id and name). Rescore with "
                "the run's own suite, or one with the same ids."
            )
        return Suite.from_dict(kept)


def fill(text: str, values: Mapping[str, Any], where: str) -> str:
    """``text`` with each ``{name}`` (or ``{{ name }}``) replaced by ``values[name]``."""
    missing = sorted({a or b for a, b in VARIABLE.findall(text) if (a or b) not in values})
    if missing:
        raise InvalidSuite(
            f"The prompt uses {', '.join('{' + m + '}' for m in missing)} but {where} gives no "
            f"value for {'it' if len(missing) == 1 else 'them'} (it has "
            f"{', '.join(sorted(values)) or 'no variables'}). Add a column for it to the cases, "
            "or take it out of the prompt."
        )
    return _fill_known(text, values)


def _fill_known(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with the variables ``values`` knows filled in (texts, and texts in lists)."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: str(values.get(m.group(1) or m.group(2), m.group(0))), value)
    if isinstance(value, list):
        return [_fill_known(v, values) for v in value]
    return value


# what a rescore takes from the suite that checks the stored replies (``Suite.checked_by``)
_CHECKS = ("assert", "min_pass_rate", "significance", "grader")


def _assert_list(assertions: Sequence[Assertion]) -> dict[str, Any]:
    return {"assert": [a.to_dict() for a in assertions]} if assertions else {}


def _lists(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


class _Reader:
    """Builds a Suite from plain data, naming the file line of whatever is wrong."""

    def __init__(self, lines: Mapping[tuple, int]):
        self.lines = lines

    def where(self, *path) -> str:
        """'prompts[2] (line 14)', the nearest line known for ``path``."""
        label = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return f"{label or 'the suite'}, line {self.lines[path[:end]]}"
        return label or "the suite"

    def fail(self, message: str, *path) -> InvalidSuite:
        return InvalidSuite(f"{message} ({self.where(*path)})")

    def mapping(self, value: Any, *path) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(f"Expected a mapping of fields; found {value!r}", *path)
        return value

    def known(self, values: Mapping, allowed: Sequence[str], *path) -> None:
        unknown = [k for k in values if k not in allowed]
        if unknown:
            raise self.fail(
                f"Unknown field{'s' * (len(unknown) > 1)} {', '.join(map(str, unknown))}; "
                f"expected {', '.join(allowed)}",
                *path,
            )

    def listed(self, values: Mapping, key: str) -> list:
        value = values.get(key) or []
        if not isinstance(value, list):
            raise self.fail(f"{key} must be a list; found {type(value).__name__}", key)
        return value

    def assertions(self, value: Any, *path) -> tuple[Assertion, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("assert must be a list of assertions", *path)
        return tuple(Assertion.from_dict(a, self.where(*path, i)) for i, a in enumerate(value))

    def settings(self, values: Mapping[str, Any], limits: Mapping, backend) -> ChatSettings:
        try:
            return ChatSettings(
                system_prompt=str(values.get("system_prompt", ChatSettings().system_prompt) or ""),
                pinned=tuple(str(p) for p in values.get("pinned") or ()),
                budget_tokens=int(values.get("budget_tokens", ChatSettings().budget_tokens)),
                limits=self.limits(limits, "limits"),
                backend=backend,
            )
        except (TypeError, ValueError) as e:
            raise self.fail(str(e).rstrip("."), "budget_tokens") from None

    def limits(
        self, values: Mapping[str, Any], *path, base: ChatLimits | None = None
    ) -> ChatLimits:
        names = {spec.name for spec in ChatLimits.specs()}
        self.known(values, sorted(names), *path)
        merged = (base or ChatLimits()).to_dict()
        for key, value in values.items():
            if key in ("stop", "banned"):
                merged[key] = tuple([value] if isinstance(value, str) else value or ())
            else:
                merged[key] = value
        try:
            return ChatLimits.from_dict(merged)
        except (TypeError, ValueError) as e:
            raise self.fail(str(e).rstrip("."), *path) from None

    def backend(self, value: Any, *path) -> BackendSpec:
        if value is None or value == "embedded":
            return BackendSpec()
        if isinstance(value, str):
            raise self.fail(
                f"backend is embedded or a mapping {{kind: endpoint, base_url, model}}; found "
                f"{value!r}",
                *path,
            )
        try:
            return BackendSpec.from_dict(dict(self.mapping(value, *path)))
        except (TypeError, ValueError) as e:
            raise self.fail(str(e).rstrip("."), *path) from None

    def suite(self, values: Any, name: str) -> Suite:
        values = self.mapping(values)
        self.known(values, SUITE_FIELDS)
        backend = self.backend(values.get("backend"), "backend")
        limits = self.mapping(values.get("limits") or {}, "limits")
        settings = self.settings(values, limits, backend)
        prompts = self.prompts(self.listed(values, "prompts"))
        cases = self.cases(self.listed(values, "cases"))
        variants = self.variants(self.listed(values, "variants"), settings)
        try:
            options = RunOptions.from_dict({k: values[k] for k in RUN_FIELDS if k in values})
        except InvalidSuite as e:
            raise self.fail(
                str(e).rstrip("."), next((k for k in RUN_FIELDS if k in str(e)), "repeat")
            ) from None
        grader = values.get("grader")
        if grader is not None:
            grader = self.mapping(grader, "grader")
            self.known(grader, ("base_url", "model", "api_key_name"), "grader")
            if not grader.get("base_url") or not grader.get("model"):
                raise self.fail("grader needs base_url and model", "grader")
            grader = Grader(**{k: str(v) for k, v in grader.items()})
        suite = Suite(
            name=str(values.get("name") or name or "suite").strip(),
            prompts=prompts,
            variants=variants,
            cases=cases,
            assertions=self.assertions(values.get("assert"), "assert"),
            description=str(values.get("description") or ""),
            settings=settings,
            repeat=options.repeat,
            min_pass_rate=float(options.min_pass_rate),
            significance=float(options.significance),
            grader=grader,
        )
        list(suite.cells())  # a variable with no value is refused now, not mid-run
        return suite

    def prompts(self, items: list) -> tuple[Prompt, ...]:
        if not items:
            raise self.fail("A suite needs at least one prompt", "prompts")
        prompts = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                item = {"text": item}
            item = self.mapping(item, "prompts", i)
            self.known(item, ("id", "text", "assert"), "prompts", i)
            text = str(item.get("text") or "")
            if not text.strip():
                raise self.fail("A prompt needs text", "prompts", i)
            prompts.append(
                Prompt(
                    str(item.get("id") or f"p{i + 1}"),
                    text,
                    self.assertions(item.get("assert"), "prompts", i, "assert"),
                )
            )
        self.unique([p.id for p in prompts], "prompt id", "prompts")
        return tuple(prompts)

    def cases(self, items: list) -> tuple[Case, ...]:
        cases = []
        for i, item in enumerate(items):
            item = self.mapping(item, "cases", i)
            self.known(item, ("id", "vars", "assert", "turns"), "cases", i)
            found = self.mapping(item.get("vars") or {}, "cases", i, "vars")
            cases.append(
                Case(
                    str(item.get("id") or f"c{i + 1}"),
                    {str(k): "" if v is None else str(v) for k, v in found.items()},
                    self.assertions(item.get("assert"), "cases", i, "assert"),
                    self.turns(item.get("turns"), i),
                )
            )
        self.unique([c.id for c in cases], "case id", "cases")
        return tuple(cases) or (Case("default", {}),)

    def turns(self, items: Any, case: int) -> tuple[tuple[str, str], ...]:
        """A case's earlier turns: ``[{role: user|assistant, content: ...}]``, none empty."""
        if not isinstance(items or [], list):
            raise self.fail("turns must be a list of {role, content}", "cases", case, "turns")
        out = []
        for j, item in enumerate(items or []):
            where = ("cases", case, "turns", j)
            turn = self.mapping(item, *where)
            self.known(turn, ("role", "content"), *where)
            role, content = turn.get("role"), turn.get("content")
            if role not in TURN_ROLES:
                raise self.fail(
                    f"a turn's role is user or assistant; found {role!r}", *where, "role"
                )
            if not isinstance(content, str) or not content.strip():
                raise self.fail(
                    f"a {role} turn needs content: the message's text; found {content!r}",
                    *where,
                    "content",
                )
            out.append((role, content))
        return tuple(out)

    def variants(self, items: list, settings: ChatSettings) -> tuple[Variant, ...]:
        variants = []
        for i, item in enumerate(items or [{"name": "default"}]):
            item = dict(self.mapping(item, "variants", i))
            name = str(item.pop("name", "") or f"v{i + 1}")
            backend = (
                self.backend(item.pop("backend"), "variants", i, "backend")
                if "backend" in item
                else settings.backend
            )
            budget = item.pop("budget_tokens", None)
            if budget is not None and (not isinstance(budget, int) or budget < 16):
                raise self.fail(
                    f"budget_tokens must be a whole number of at least 16; found {budget!r}",
                    "variants",
                    i,
                )
            limits = self.limits(item, "variants", i, base=settings.limits)
            variants.append(Variant(name, limits, backend, budget))
        self.unique([v.name for v in variants], "variant name", "variants")
        return tuple(variants)

    def unique(self, names: list[str], what: str, *path) -> None:
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise self.fail(
                f"Each {what} must be different; {', '.join(sorted(seen))} appears more than once",
                *path,
            )
