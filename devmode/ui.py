"""Shared page helpers: the only devmode module that imports Streamlit.

The pages, their titles, icons and addresses are listed once (``PAGES``); ``app.py`` makes the
navigation from them and every page starts with ``page_setup(__file__)``. Widgets for settings
come from the settings' own specs (``setting_input``, ``settings_form``), so a page never
restates a bound, a choice or a help text. They live here because every file in ``pages/`` is
a page.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from devmode import environment
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.specs import Settings, Spec

# (file, title, icon, address): the navigation, the page titles and the links, in one place.
# The addresses are those the pages had before the navigation existed (/Fine_tune, ...).
# Seconds between redraws of a live panel (the watcher's status), and of the wall display.
LIVE_REFRESH_S = 3
WALL_REFRESH_S = 10

PAGES = [
    ("pages/0_Home.py", "Home", ":material/home:", ""),
    ("pages/1_Datasets.py", "Datasets", ":material/table:", "Datasets"),
    ("pages/2_Fine_tune.py", "Fine-tune", ":material/model_training:", "Fine_tune"),
    ("pages/3_Monitor.py", "Monitor", ":material/monitoring:", "Monitor"),
    ("pages/4_Chat_sandbox.py", "Chat sandbox", ":material/chat:", "Chat_sandbox"),
]


def navigation():
    """The app's navigation (``app.py`` runs it): Home first and at ``/``, then the pages."""
    return st.navigation(
        [
            st.Page(path, title=title, icon=icon, default=not address, url_path=address or None)
            for path, title, icon, address in PAGES
        ]
    )


def page_setup(script: str, heading: str | None = None) -> None:
    """Page config, the password gate (when one is configured), the database in use in the
    sidebar, and the page's title (its ``PAGES`` title, or ``heading``). Every page starts
    with ``page_setup(__file__)``."""
    leave_legacy_navigation()
    name = Path(script).name
    _, title, icon, _ = next(page for page in PAGES if Path(page[0]).name == name)
    st.set_page_config(page_title=f"{title} · devmode", page_icon=icon, layout="wide")
    require_password()
    st.sidebar.caption(f"Database: `{environment.db_path()}`")
    st.title(heading or title)


def query_flag(name: str) -> bool:
    """Whether the address asks for ``name`` (``?kiosk=1``; 0, false and off say no)."""
    return st.query_params.get(name, "").strip().lower() not in ("", "0", "false", "off", "no")


def query_text(name: str) -> str | None:
    """The address's ``name`` parameter (``?dataset=wire``), or None."""
    return st.query_params.get(name) or None


def kiosk_chrome() -> None:
    """A wall display: no sidebar, header or toolbar, large figures."""
    st.markdown(
        """<style>
        [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
        header[data-testid="stHeader"], [data-testid="stToolbar"] {display: none !important;}
        .block-container {padding-top: 1rem; max-width: 100% !important;}
        [data-testid="stMetricValue"] {font-size: 3rem;}
        [data-testid="stMetricLabel"] p {font-size: 1.4rem;}
        </style>""",
        unsafe_allow_html=True,
    )


def leave_legacy_navigation() -> None:
    """Streamlit decides when the server starts that an app with a ``pages/`` folder beside its
    entry file runs in its legacy mode (the folder's files listed as pages, "app" among them)
    until ``st.navigation`` is called. Landing first on a page other than Home (a wall screen
    opened at /Monitor after a restart) would run that page alone under the legacy list:
    declare the navigation, which ends the legacy mode for the server, and run again through
    ``app.py`` before anything is drawn.

    Only a session's first run does it: it has no widget interaction a rerun could lose (and
    Streamlit's AppTest, unlike a server, starts every run in the legacy mode).
    """
    from streamlit.runtime.pages_manager import PagesManager  # no public API tells this

    first_run = "ui_navigation_declared" not in st.session_state
    st.session_state["ui_navigation_declared"] = True
    if PagesManager.uses_pages_directory and first_run:
        navigation()  # st.navigation: from now on app.py's navigation is the app's
        st.rerun()


def page_links() -> None:
    """A link to every page but Home, with its icon."""
    for path, title, icon, address in PAGES:
        if address:
            st.page_link(path, label=title, icon=icon)


def configured_password_hash() -> str | None:
    """The password hash from $DEVMODE_PASSWORD_HASH or the Streamlit secret; None: no gate."""
    from devmode import auth

    return os.environ.get(auth.PASSWORD_HASH_ENV) or secret(auth.PASSWORD_HASH_SECRET)


def require_password() -> None:
    """With a password hash configured, show a sign-in form and stop the page until this
    browser session has signed in; a wrong password costs a second (it slows guessing).
    ``?logout=1`` on any address signs the session out (the wall display has no sidebar)."""
    from devmode import auth

    stored = configured_password_hash()
    if not stored:
        return
    if query_flag("logout"):
        st.session_state.pop("auth_signed_in", None)
        del st.query_params["logout"]
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
    with open_db(environment.db_path()) as db:
        yield db


def with_db(action: Callable[..., Any], *args: Any) -> Any:
    """``action(db, *args)`` on a connection of its own (a button's callback)."""
    with page_db() as db:
        return action(db, *args)


def keep_choice_valid(key: str, options: list) -> None:
    """Point a select widget's remembered value at an existing option (the first one) when what
    it remembers was deleted or renamed since; call it before the widget is drawn."""
    if options and st.session_state.get(key) not in options:
        st.session_state[key] = options[0]


# ----------------------------------------------------------------------------------------------
# Widgets made from settings' specs


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


# ----------------------------------------------------------------------------------------------
# Chat models and keys


@st.cache_resource(show_spinner="Loading the embedded chat model (the first time converts it)…")
def embedded_chat_model(cache_dir: str, precision: str):
    """The embedded chat model, loaded once per process and shared by every session (one
    reply at a time: it queues concurrent callers itself). Never mutate what this returns."""
    from devmode.chat import backends

    return backends.EmbeddedBackend.load(cache_dir, precision)


def chat_backend(spec):
    """The backend for a ``limits.BackendSpec``: the cached embedded model, or an endpoint with
    its key from Streamlit secrets or the environment (read here, never stored)."""
    from devmode.chat import backends

    return backends.make_backend(
        spec,
        cache_dir=str(environment.chat_model_dir(environment.db_path())),
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


def key_status(name: str) -> str:
    """A caption saying where the key called ``name`` was found, without showing it."""
    found_in = api_key(name.strip())[1]
    if found_in == "nowhere":
        return "No key under that name: fine for a local server that needs none."
    return f"Key found in {found_in}."


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


# ----------------------------------------------------------------------------------------------
# Datasets


def column_roles(
    roles: tuple[str, ...], columns: list[str], current: dict[str, str | None], prefix: str
) -> dict[str, str | None]:
    """A select per role (text, label, date, ticker), starting at ``current``; every role but
    the text may be none. Returns ``{role: column or None}``."""
    chosen = {}
    for container, role in zip(st.columns(len(roles)), roles, strict=True):
        choices = ([None] if role != "text" else []) + list(columns)
        index = choices.index(current.get(role)) if current.get(role) in choices else 0
        chosen[role] = container.selectbox(
            role.capitalize(),
            choices,
            index=index,
            key=f"{prefix}_{role}",
            format_func=lambda c: "— none —" if c is None else c,
        )
    return chosen


def read_upload_once(uploaded, format_: str | None, encoding: str | None):
    """(upload, its first 200 rows) for a ``st.file_uploader`` file: detected once per file
    and reading options, and kept in session state for the reruns that follow."""
    from devmode.data import readers

    key = (uploaded.file_id, format_, encoding)
    cached = st.session_state.get("datasets_upload_cache")
    if not cached or cached[0] != key:
        upload = readers.read_upload(
            uploaded, filename=uploaded.name, format=format_, encoding=encoding
        )
        cached = (key, upload, upload.preview(200))
        st.session_state["datasets_upload_cache"] = cached
    return cached[1], cached[2]


def stats_of(dataset):
    """A stored dataset's checks (``ingest.DatasetStats``), counted again only when it changes."""
    return dataset_stats(
        environment.db_path(),
        dataset.id,
        dataset.name,
        dataset.updated_at,
        dataset.mapping,
        dataset.split,
    )


@st.cache_data(show_spinner="Counting rows, gaps and labels…", max_entries=64)
def dataset_stats(db_path: str, dataset_id: int, name: str, updated_at: str, mapping, split):
    """A dataset's checks, counted again only when what they depend on changes (a million rows
    take seconds): the arguments after ``name`` are the cache's key."""
    from devmode.data import ingest

    with open_db(db_path) as db:
        return ingest.dataset_stats(db, name)


@st.cache_data(show_spinner="Asking the model which rows it is least sure of…", max_entries=16)
def rows_to_label(db_path: str, name: str, model_run_id: int | None, row_count: int):
    """The dataset's unlabelled rows, least sure first: ranked again only when the model or the
    rows change (the arguments after ``name`` are the cache's key)."""
    from devmode.labels import labelling

    with open_db(db_path) as db:
        return labelling.rows_to_label(db, name)


def save_label_edits(name: str, rows: list, key: str, allow_new_key: str) -> None:
    """Callback of the labelling table: save what was just typed or ticked, at once."""
    from devmode.labels import labelling

    edits = labelling.edited_labels(rows, st.session_state[key]["edited_rows"])
    if not edits:
        return
    try:
        with open_db(environment.db_path()) as db:
            version = labelling.save_labels(
                db, name, edits, allow_new_classes=st.session_state.get(allow_new_key, False)
            )
    except DevmodeError as e:
        st.session_state["labelling_error"] = str(e)
    else:
        st.session_state["labelling_saved"] = (
            f"Saved {len(edits)} label{'s' * (len(edits) > 1)}; {name} is at label version {version}."
        )


@st.cache_data(show_spinner="Comparing the texts with the model's training set…", max_entries=32)
def untested_warning(db_path: str, model_run_id: int, dataset: str, row_count: int):
    """The Monitor's drift warning, worked out again only when the model or the rows change."""
    from devmode.finetune import out_of_domain
    from devmode.models import registry

    with open_db(db_path) as db:
        model = registry.get_model_for_run(db, model_run_id)
        return out_of_domain.untested_warning(db, model, dataset)


def job_panel(job, *, cancel_label: str, key: str, cancel: Callable[[], None]) -> None:
    """A job's progress bar (``job.progress_text()``) and a cancel button while it works; its
    error once it stopped (a warning when its worker died: resuming goes on)."""
    if job.is_active:
        st.progress(job.fraction_done, text=job.progress_text())
        if st.button(cancel_label, key=key):
            cancel()
    elif job.error:
        (st.warning if job.is_interrupted else st.error)(job.error)


def new_token() -> str:
    """A fresh short token: part of a widget's key, so the widget starts over from its data."""
    import secrets

    return secrets.token_hex(4)


# A suite grid's cell colours: pass green, fail red, error or not run amber.
VERDICT_COLOURS = {"pass": "#e6f4ea", "fail": "#fce8e6", "error": "#fef7e0", "not": "#fef7e0"}


def verdict_colour(value: Any) -> str:
    """CSS for one cell of ``reports.grid`` ('fail 1/3' is a fail)."""
    word = str(value).split(" ")[0]
    colour = VERDICT_COLOURS.get(word)
    return f"background-color: {colour}" if colour else ""
