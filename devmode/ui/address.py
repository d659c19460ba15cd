"""What a page's address asks for: ``?kiosk=1`` (a flag), ``?dataset=wire`` (a text)."""

from __future__ import annotations

import streamlit as st


def query_flag(name: str) -> bool:
    """Whether the address asks for ``name`` (``?kiosk=1``; 0, false and off say no)."""
    return st.query_params.get(name, "").strip().lower() not in ("", "0", "false", "off", "no")


def query_text(name: str) -> str | None:
    """The address's ``name`` parameter (``?dataset=wire``), or None."""
    return st.query_params.get(name) or None
