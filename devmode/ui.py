"""Shared page helpers: the only devmode module that imports Streamlit.

They live here because every file in ``pages/`` becomes a page.
"""

from __future__ import annotations

import os
import time
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
    """Page config, the password gate (when one is configured), and the database in use shown
    in the sidebar. Every page starts with it."""
    st.set_page_config(page_title=f"{title} · devmode", page_icon=icon, layout="wide")
    require_password()
    st.sidebar.caption(f"Database: `{config.db_path()}`")


def configured_password_hash() -> str | None:
    """The password hash from $DEVMODE_PASSWORD_HASH or the Streamlit secret; None: no gate."""
    from devmode import auth

    return os.environ.get(auth.PASSWORD_HASH_ENV) or secret(auth.PASSWORD_HASH_SECRET)


def require_password() -> None:
    """With a password hash configured, show a sign-in form and stop the page until this
    browser session has signed in; a wrong password costs a second (it slows guessing)."""
    from devmode import auth

    stored = configured_password_hash()
    if not stored:
        return
    if st.session_state.get("auth_signed_in"):
        if st.sidebar.button("Sign out", key="auth_sign_out", icon=":material/logout:"):
            del st.session_state["auth_signed_in"]
            st.rerun()
        return
    st.title("devmode")
    st.caption("This devmode is shared by a team. Sign in to continue.")
    with st.form("auth_form"):
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            accepted = auth.verify_password(password, stored)
        except auth.InvalidPasswordHash as e:
            st.error(str(e))
            st.stop()
        if accepted:
            st.session_state["auth_signed_in"] = True
            st.rerun()
        time.sleep(1.0)
        st.error("Wrong password.")
    st.stop()


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


def secret(name: str) -> str | None:
    """The Streamlit secret ``name``, or None (also when there is no secrets.toml at all, where
    Streamlit raises rather than returning None)."""
    try:
        value = st.secrets.get(name)
    except Exception:
        return None
    return str(value) if value else None


def api_key(name: str) -> tuple[str | None, str]:
    """(the key, where it was found) for a secret or environment variable called ``name``:
    Streamlit secrets first, then the environment."""
    value = secret(name) if name else None
    if value:
        return value, "Streamlit secrets"
    if name and os.environ.get(name):
        return os.environ[name], "the environment"
    return None, "nowhere"


@contextmanager
def uploaded_file(uploaded) -> Iterator[str]:
    """The path of a private temporary copy of a ``st.file_uploader`` file, for code that reads
    paths (zip archives); removed afterwards. The person's file name is not used for it."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="devmode-upload-")
    try:
        path = os.path.join(folder, "upload.bin")
        with open(path, "wb") as out:
            out.write(uploaded.getbuffer())
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
