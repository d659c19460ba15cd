"""What every page shares, and the only devmode code that imports Streamlit (this package).

The pages, their titles, icons and addresses are listed once (``PAGES``); ``app.py`` makes the
navigation from them and every page starts with ``page_setup(__file__)``. A page's database
connection, its hand-offs to its next run (``Handoff``), a job's panel, and "try this, show the
error" (``errors_shown``) are here; the rest is by what it serves:

- ``address``: what the page's address asks for (``?kiosk=1``, ``?dataset=wire``);
- ``signin``: the optional password gate;
- ``forms``: widgets made from settings' specs, so a page never restates a bound or a choice;
- ``chat_view``: the embedded chat model (cached per process) and endpoint keys;
- ``datasets_view``: column roles, uploads read once, cached dataset checks, labelling;
- ``playground_view``: models loaded once per server, answers cached, words highlighted;
- ``suites_view``: a suite grid's colours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from devmode import environment
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.ui import signin

# Seconds between redraws of a live panel (the watcher's status), and of the wall display.
LIVE_REFRESH_S = 3


WALL_REFRESH_S = 10


# (file, title, icon, address): the navigation, the page titles and the links, in one place.
# The addresses are those the pages had before the navigation existed (/Fine_tune, ...).
PAGES = [
    ("pages/0_Home.py", "Home", ":material/home:", ""),
    ("pages/1_Datasets.py", "Datasets", ":material/table:", "Datasets"),
    ("pages/2_Fine_tune.py", "Fine-tune", ":material/model_training:", "Fine_tune"),
    ("pages/6_Playground.py", "Playground", ":material/science:", "Playground"),
    ("pages/3_Monitor.py", "Monitor", ":material/monitoring:", "Monitor"),
    ("pages/4_Chat_sandbox.py", "Chat sandbox", ":material/chat:", "Chat_sandbox"),
    ("pages/5_Suites.py", "Suites", ":material/checklist:", "Suites"),
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
    signin.require_password()
    st.sidebar.caption(f"Database: `{environment.db_path()}`")
    st.title(heading or title)


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
    for path, title, _, address in PAGES:
        if address:
            page_link(path, title)


# The folder ``app.py`` and ``pages/`` are in: a page is named by its absolute path, so a link
# finds it whether the app runs through the navigation or a page runs alone (as tests do).
APP_FOLDER = Path(__file__).resolve().parents[2]


def page_link(path: str, label: str, box: Any = None) -> None:
    """A link to the page in file ``path`` (one of ``PAGES``), with its icon."""
    _, title, icon, address = next(page for page in PAGES if page[0] == path)
    page = st.Page(APP_FOLDER / path, title=title, icon=icon, url_path=address or None)
    (box or st).page_link(page, label=label, icon=icon)


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


@contextmanager
def errors_shown(box: Any = None, *, warn: str = "") -> Iterator[None]:
    """Run the block; a devmode error in it is shown (in ``box``, default the page) and the page
    goes on after the block, which stops where the error was raised:

        with ui.errors_shown():
            renamed = ingest.rename_dataset(db, name, new_name)
            st.success(f"Renamed to {renamed.name}.")      # only when the rename worked

    With ``warn``, the error is a warning that says so first ("As it stands, ...: " + error):
    for what a person is still typing.
    """
    try:
        yield
    except DevmodeError as e:
        if warn:
            (box or st).warning(f"{warn}: {e}")
        else:
            (box or st).error(str(e))


class Handoff:
    """What a page's run leaves for its next run (a notice to show, a choice to select): kept in
    the session under one key per page, and taken, once, by the next run.

        handoff = ui.Handoff("datasets")
        handoff.leave(select="news", notice="Renamed.")   # then st.rerun()
        left = handoff.take()                             # {"select": "news", "notice": ...}
    """

    def __init__(self, page: str):
        self.key = f"{page}_handoff"

    def leave(self, **values: Any) -> None:
        st.session_state[self.key] = {**st.session_state.get(self.key, {}), **values}

    def take(self) -> dict[str, Any]:
        return st.session_state.pop(self.key, None) or {}
