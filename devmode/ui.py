"""Shared page helpers: the only devmode module that imports Streamlit.

They live here because every file in ``pages/`` becomes a page.
"""

from __future__ import annotations

import os
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
    ("pages/4_Chat_sandbox.py", "Chat sandbox", ":material/chat:"),
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


@st.cache_resource(show_spinner="Loading the embedded chat model (the first time converts it)…")
def embedded_chat_model(cache_dir: str, precision: str):
    """The embedded chat model, loaded once per process and shared by every session (one
    reply at a time: it queues concurrent callers itself). Never mutate what this returns."""
    from devmode import llm

    return llm.EmbeddedBackend.load(cache_dir, precision)


def chat_backend(spec):
    """The backend for a ``chat.BackendSpec``: the cached embedded model, or an endpoint with
    its key from Streamlit secrets or the environment (read here, never stored)."""
    from devmode import llm

    return llm.make_backend(
        spec,
        cache_dir=str(config.files_dir(config.db_path()) / "llm"),
        api_key=api_key(spec.api_key_name)[0],
        load_embedded=lambda folder, precision: embedded_chat_model(str(folder), precision),
    )


def api_key(name: str) -> tuple[str | None, str]:
    """(the key, where it was found) for a secret or environment variable called ``name``:
    Streamlit secrets first, then the environment."""
    try:
        value = st.secrets.get(name) if name else None
    except Exception:  # no secrets.toml at all: Streamlit raises rather than returning None
        value = None
    if value:
        return str(value), "Streamlit secrets"
    if name and os.environ.get(name):
        return os.environ[name], "the environment"
    return None, "nowhere"
