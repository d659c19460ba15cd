"""Settings defined once: each field of a settings dataclass carries its default, bounds,
choices, label and help, and everything else is derived from it.

    @dataclass(frozen=True)
    class TrainConfig(Settings):
        error = InvalidConfig
        epochs: int = setting(5, "Passes over the training split.", minimum=1, maximum=1000)

    TrainConfig(epochs=0)            # InvalidConfig: epochs must be from 1 to 1000 (a whole number), e.g. 5; found 0.
    TrainConfig.spec("epochs").help  # the CLI's --epochs help, the page's tooltip

The CLI (``cli.py``) makes one option per spec and the pages (``ui.setting_input``) one widget
per spec, so a bound, a choice or a help text is written in exactly one place: here, on the
field. Validation runs when a settings object is built from a person's input or an imported
file; values read back from devmode's own database were validated when they were stored, and
``from_stored`` trusts them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from devmode.errors import DevmodeError

_KEY = "devmode_setting"


NOT_GIVEN: Any = object()  # a setting's option left out (None may be a value)


@dataclass(frozen=True)
class Spec:
    """One setting: what it is, what it may be, and how a person is told about it."""

    name: str
    type: type  # int, float, bool, str, or tuple (a list of strings)
    default: Any
    help: str
    label: str
    minimum: float | None = None  # inclusive bounds
    maximum: float | None = None
    above: float | None = None  # exclusive bounds
    below: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is allowed (and means "not set")
    unit: str = ""  # said after the bounds: "from 16 to 131072 tokens"
    example: Any = None  # the "e.g." of a message; the default when not given
    section: str | None = None  # where a form groups it
    flag: str | None = None  # the CLI option, when it is not --the-field-name
    widget: str | None = (
        None  # a page's widget, when not the type's usual one (slider, radio, text_area)
    )
    number_format: str | None = None  # a page's number format, e.g. "%.0e"
    step: float | None = None  # a page's step for a number widget
    # the value in effect for a config stored before the setting existed, when not the default
    # (a lever that came in off and later became the default was off for those runs)
    stored_before: Any = NOT_GIVEN

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def widget_range(self) -> tuple[Any, Any]:
        """(lowest, highest) a number widget accepts: the bounds, exclusive ones included (the
        check then says why such a value is refused)."""
        low = self.minimum if self.minimum is not None else self.above
        high = self.maximum if self.maximum is not None else self.below
        if self.type is int:
            low = None if low is None else math.ceil(low)
            high = None if high is None else math.floor(high)
        elif self.type is float:
            low = None if low is None else float(low)
            high = None if high is None else float(high)
        return low, high

    def expected(self) -> str:
        """What a valid value looks like, for messages: "from 1 to 1000 (a whole number), e.g. 5"."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.type is bool:
            return "true or false"
        if self.type in (str, tuple):
            return "text"
        low = (
            f"from {_num(self.minimum)}"
            if self.minimum is not None
            else f"above {_num(self.above)}"
            if self.above is not None
            else ""
        )
        if self.maximum is not None:
            high = (
                f"to {_num(self.maximum)}"
                if self.minimum is not None
                else f"at most {_num(self.maximum)}"
            )
        elif self.below is not None:
            high = (
                f"to below {_num(self.below)}"
                if self.minimum is not None
                else f"below {_num(self.below)}"
            )
        else:
            high = ""
        if low and high:
            text = f"{low} {high}" if self.minimum is not None else f"{low} and {high}"
        elif low:
            text = f"at least {_num(self.minimum)}" if self.minimum is not None else low
        else:
            text = high or "a number"
        if self.unit:
            text += f" {self.unit}"
        if self.type is int:
            text += " (a whole number)"
        example = self.example if self.example is not None else self.default
        if example is not None and not isinstance(example, bool):
            text += f", e.g. {_num(example)}"
        return text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this setting, or None when it can."""
        found = f"; found {value!r}."
        if value is None:
            return None if self.optional else f"{self.name} must be {self.expected()}{found}"
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        elif self.type is tuple:
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(
                self.type, "text" if self.type is str else "a list of texts"
            )
            return f"{self.name} must be {kind}{found}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be {self.expected()}{found}"
        if self.type in (int, float) and not (
            (self.minimum is None or value >= self.minimum)
            and (self.maximum is None or value <= self.maximum)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        ):
            return f"{self.name} must be {self.expected()}{found}"
        return None

    def parse(self, value: Any) -> Any:
        """This setting's value from typed text or a table cell (``"1e-4"``, ``"true"``); other
        values are returned as they are, for ``problem`` to judge."""
        if not isinstance(value, str):
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if self.type is int and number and float(value).is_integer():
                return int(value)  # 20.0 from a table cell, numpy's int64
            if self.type is float and number:
                return float(value)
            return value
        text = value.strip()
        if self.optional and text == "":
            return None
        try:
            if self.type is int:
                return int(text)
            if self.type is float:
                return float(text)
        except ValueError:
            raise DevmodeError(f"{self.name} must be a number; found {value!r}.") from None
        if self.type is bool:
            if text.lower() in ("true", "yes", "1", "on"):
                return True
            if text.lower() in ("false", "no", "0", "off"):
                return False
            raise DevmodeError(f"{self.name} must be true or false; found {value!r}.")
        return value


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(
    default: Any,
    help: str,
    *,
    label: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
    unit: str = "",
    example: Any = None,
    section: str | None = None,
    flag: str | None = None,
    widget: str | None = None,
    number_format: str | None = None,
    step: float | None = None,
    stored_before: Any = NOT_GIVEN,
) -> Any:
    """A dataclass field that is a setting: its default and everything a person is told about it.

    :param help: one sentence, shown as the CLI option's help and the widget's tooltip
    :param label: the widget's label (default: the field name in words)
    :param stored_before: what a stored config without this field ran with (default: ``default``)
    """
    details = {k: v for k, v in locals().items() if k != "default"}
    return dataclasses.field(default=default, metadata={_KEY: details})


class Settings:
    """Base of devmode's frozen settings dataclasses (training, chat limits, alert rules).

    Construction validates every field against its spec (``error`` is raised, naming the field,
    what it expected and what it found), then ``check_together`` for rules across fields.
    """

    error: ClassVar[type[DevmodeError]] = DevmodeError
    noun: ClassVar[str] = "setting"  # how messages call one of them: "'colour' is not a limit"

    def __post_init__(self) -> None:
        for spec in self.specs():
            problem = spec.problem(getattr(self, spec.name))
            if problem:
                raise self.error(problem)
        self.check_together()

    def check_together(self) -> None:
        """Rules that involve several fields; raise ``self.error`` when one is broken."""

    @classmethod
    def specs(cls) -> list[Spec]:
        """Every setting of the class, in field order."""
        return _specs(cls)

    @classmethod
    def spec(cls, name: str) -> Spec:
        for spec in cls.specs():
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def sections(cls) -> list[tuple[str | None, list[Spec]]]:
        """The specs grouped by ``section``, in order of first appearance (a form's layout)."""
        groups: dict[str | None, list[Spec]] = {}
        for spec in cls.specs():
            groups.setdefault(spec.section, []).append(spec)
        return list(groups.items())

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from outside values (an import, a form, a request), validated. Keys that are
        not fields are ignored (a stored config from an earlier version may carry one); lists
        become tuples; missing fields take their defaults."""
        return cls(**_known(cls, values))

    @classmethod
    def from_stored(cls, values: dict[str, Any]):
        """Build from values devmode stored itself, without validating them again: they were
        validated when stored. Fields added since then take the value those settings had in
        effect (``stored_before``), else their defaults."""
        obj = object.__new__(cls)
        known = cls.as_stored_before(_known(cls, values))
        for f in dataclasses.fields(cls):
            if f.name in known:
                value = known[f.name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            else:
                value = f.default_factory()  # type: ignore[misc]
            object.__setattr__(obj, f.name, value)
        return obj

    @classmethod
    def as_stored_before(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` written by an earlier devmode (a stored run, an exported model), with the
        settings it did not know filled in as they were then, where that differs from today's
        default."""
        earlier = {s.name: s.stored_before for s in cls.specs() if s.stored_before is not NOT_GIVEN}
        return {**{k: v for k, v in earlier.items() if k not in values}, **values}

    @classmethod
    def parse_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Typed text (a CLI ``field=value``, a table cell) as field values, by each spec's type;
        names that are not settings are refused with the list of those that are."""
        out = {}
        for key, value in values.items():
            try:
                spec = cls.spec(key)
            except KeyError:
                known = ", ".join(s.name for s in cls.specs())
                raise cls.error(f"{key!r} is not a {cls.noun}. Known: {known}.") from None
            try:
                out[key] = spec.parse(value)
            except DevmodeError as e:
                raise cls.error(str(e)) from None
        return out


def _known(cls, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}


def _specs(cls) -> list[Spec]:
    cached = cls.__dict__.get("_specs_cache")
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        details = f.metadata.get(_KEY)
        if details is None:
            continue
        kind, optional = _base_type(hints[f.name])
        out.append(
            Spec(
                name=f.name,
                type=kind,
                default=f.default,
                optional=optional,
                **{**details, "label": details["label"] or f.name.replace("_", " ").capitalize()},
            )
        )
    cls._specs_cache = out
    return out


def _base_type(hint: Any) -> tuple[type, bool]:
    """(int | float | bool | str | tuple, whether None is allowed) from a field's annotation."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    origin = typing.get_origin(hint) or hint
    return (tuple if origin is tuple else origin), optional
