"""Widgets made from settings' specs: a setting's label, help, bounds, choices, step and format
come from its spec, so a page never restates any of them.

    values = forms.settings_form(TrainConfig, "train")      # a widget per setting, by section
    forms.setting_input(ChatLimits.spec("max_tokens"), "chat_max_tokens")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import streamlit as st

from devmode.specs import Settings, Spec


def setting_input(
    spec: Spec,
    key: str,
    container: Any = None,
    *,
    options: list | None = None,
    format_func: Callable[[Any], str] | None = None,
    disabled: bool = False,
    start: Any = None,
) -> Any:
    """One widget for one setting: its label, help, bounds, choices, step and format come from
    ``spec``; it starts at ``start`` (default: the setting's default) unless session state
    already holds ``key``.

    :param options: choices offered for a setting that has none of its own (scored tickers)
    """
    box = container if container is not None else st
    fresh = key not in st.session_state
    if start is not None:
        spec = dataclasses.replace(spec, default=start)
    common = {"key": key, "help": spec.help, "disabled": disabled}
    choices = options if options is not None else spec.choices
    if spec.type is bool:
        return box.checkbox(spec.label, **({"value": spec.default} if fresh else {}), **common)
    if choices:
        choices = list(choices)
        start = {"index": choices.index(spec.default)} if fresh and spec.default in choices else {}
        shown = {"format_func": format_func} if format_func else {}
        if spec.widget == "radio":
            return box.radio(spec.label, choices, horizontal=True, **start, **shown, **common)
        return box.selectbox(spec.label, choices, **start, **shown, **common)
    if spec.type in (int, float) and spec.widget != "text_input":
        low, high = spec.widget_range
        value = {"value": spec.default} if fresh else {}
        step = {"step": spec.type(spec.step)} if spec.step else {}
        if spec.widget == "slider":
            return box.slider(spec.label, low, high, **value, **step, **common)
        number = box.number_input(
            spec.label, low, high, **value, **step, format=spec.number_format, **common
        )
        return spec.type(number)
    if spec.widget == "text_area":
        return box.text_area(spec.label, **({"value": spec.default} if fresh else {}), **common)
    start = {} if not fresh or spec.default is None else {"value": str(spec.default)}
    return box.text_input(spec.label, **start, **common)


def settings_form(
    cls: type[Settings],
    prefix: str,
    *,
    columns: int = 3,
    options: dict[str, list] | None = None,
    format_funcs: dict[str, Callable[[Any], str]] | None = None,
    start: Settings | None = None,
) -> dict[str, Any]:
    """A widget per setting of ``cls``, keyed ``{prefix}_{field}``: settings without a section
    in a row on top, each section in an expander of ``columns`` columns. Returns the values.

    :param start: where the widgets start (default: the settings' defaults)
    """
    values = {}
    for section, specs in cls.sections():
        box = st.expander(section) if section else st.container()
        row = box.columns(min(columns, len(specs)))
        for i, spec in enumerate(specs):
            values[spec.name] = setting_input(
                spec,
                f"{prefix}_{spec.name}",
                row[i % len(row)],
                options=(options or {}).get(spec.name),
                format_func=(format_funcs or {}).get(spec.name),
                start=getattr(start, spec.name) if start is not None else None,
            )
    return values


def fill_form(prefix: str, values: dict[str, Any]) -> None:
    """Put ``values`` into the widgets keyed ``{prefix}_{name}`` (before they are drawn)."""
    st.session_state.update({f"{prefix}_{name}": value for name, value in values.items()})


def form_values(prefix: str, names: list[str]) -> dict[str, Any]:
    """What the widgets keyed ``{prefix}_{name}`` hold, by name."""
    return {name: st.session_state[f"{prefix}_{name}"] for name in names}
