"""Shared page helpers: the only devmode module that imports Streamlit.

They live here because every file in ``pages/`` becomes a page.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from devmode import config
from devmode.db import open_db

PAGES = [
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Datasets.py", "Datasets", ":material/table:"),
    ("pages/2_Fine_tune.py", "Fine-tune", ":material/model_training:"),
    ("pages/3_Monitor.py", "Monitor", ":material/monitoring:"),
]


def page_setup(title: str, icon: str = ":material/bolt:") -> None:
    """Page config, and the database in use shown in the sidebar."""
    st.set_page_config(page_title=f"{title} · devmode", page_icon=icon, layout="wide")
    st.sidebar.caption(f"Database: `{config.db_path()}`")


@contextmanager
def page_db() -> Iterator:
    """A database connection for this script run only (connections cannot cross threads)."""
    with open_db(config.db_path()) as db:
        yield db


def keep_choice_valid(key: str, options: list) -> None:
    """Point a select widget's remembered value at an existing option (the first one) when what
    it remembers was deleted or renamed since; call it before the widget is drawn."""
    if options and st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
