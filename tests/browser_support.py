"""Real-browser testing: `streamlit run app.py` on 127.0.0.1, driven by Playwright in Debian's
chromium. Used by tests/test_journey.py, tests/test_faults.py and benchmarks/monitor_load.py.

    with StreamlitApp(db_path) as app, chromium() as browser:
        page = browser.new_page()
        page.goto(app.url("Datasets"))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DEVMODE_CHROMIUM", "/usr/bin/chromium")
# Headless chromium on a machine with a closed network: without these it keeps trying (and
# failing) to reach Google's services, and as root it needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WHY_NO_CHROMIUM = (
    f"No chromium at {CHROMIUM}. `make test` installs Debian's chromium (apt-get install "
    "chromium); set DEVMODE_CHROMIUM to another binary, or DEVMODE_SKIP_BROWSER=1 to skip."
)


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The environments the servers of this session ran in: the launchers their jobs' workers came
# from are stopped when the session ends (``conftest.warm_workers``).
SERVER_ENVIRONMENTS: list[dict[str, str]] = []


class StreamlitApp:
    """The app as `make run` serves it, on a free port, with its own database file."""

    def __init__(self, db_path: str | Path, *, env: dict[str, str] | None = None):
        self.db_path = str(db_path)
        self.port = free_port()
        self.env = {**os.environ, "DEVMODE_DB": self.db_path, **(env or {})}
        SERVER_ENVIRONMENTS.append(self.env)
        self.log_path = Path(self.db_path).with_name(f"streamlit-{self.port}.log")
        self.process: subprocess.Popen | None = None

    def url(self, page: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{page}"

    def start(self, timeout: float = 90) -> StreamlitApp:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "app.py",
                "--server.address", "127.0.0.1",
                "--server.port", str(self.port),
                "--server.headless", "true",
                "--browser.gatherUsageStats", "false",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url("_stcore/health"), timeout=2) as answer:
                    if answer.read() == b"ok":
                        return self
            time.sleep(0.3)
        raise TimeoutError(f"streamlit did not answer in {timeout} s")

    def kill(self) -> None:
        """kill -9 the server (as a crash would), not the workers it started in their sessions."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> StreamlitApp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless chromium browser through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# ----------------------------------------------------------------------------------------------
# Driving Streamlit's widgets as a person does


def settle(page, timeout: float = 120_000) -> None:
    """Wait until the script run that the last action started has finished."""
    page.wait_for_timeout(250)  # the run may not have started yet
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout
    )


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid=stApp]", timeout=60_000)
    settle(page)


def type_into(page, name: str, text: str, role: str = "textbox") -> None:
    """Fill a text input / area / number input by its label, then commit it (Tab)."""
    field = page.get_by_role(role, name=name, exact=True)
    field.fill(text)
    field.press("Tab")
    settle(page)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    # a react-aria ComboBox: its input is for typing; the button beside it opens the list.
    # A rerun can redraw it while it opens, so try again a few times.
    box = page.get_by_role("combobox", name=label, exact=True)
    for attempt in range(4):
        settle(page)
        box.locator("xpath=following-sibling::button").click()
        item = page.get_by_role("option", name=option, exact=True)
        try:
            item.click(timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the list closed again
            if attempt == 3:
                raise
            page.keyboard.press("Escape")
    settle(page)


def expand(page, label: str) -> None:
    """Open the expander headed ``label`` (left open if it already is)."""
    header = page.get_by_test_id("stExpander").get_by_text(label, exact=True)
    if not header.evaluate("e => e.closest('details').open"):
        header.click()
        page.wait_for_timeout(200)


def click(page, name: str, role: str = "button") -> None:
    page.get_by_role(role, name=name, exact=True).click()
    settle(page)


def wait_for_text(page, text: str, timeout: float = 120_000) -> None:
    """Wait until ``text`` shows on the page (the first place it does)."""
    page.get_by_text(text).first.wait_for(timeout=timeout)


def visible_text(page) -> str:
    return page.locator("[data-testid=stMain]").inner_text()


def assert_healthy(page) -> None:
    """No exception box and no "database is locked" anywhere on the page."""
    text = visible_text(page)
    assert "database is locked" not in text.lower(), text[-2000:]
    errors = page.locator("[data-testid=stException]")
    assert errors.count() == 0, errors.first.inner_text()[:3000]


def grid_text(grid) -> str:
    """The cells of a ``st.dataframe`` / ``st.data_editor`` grid as text (its canvas is drawn,
    so the words are read from the accessible table the grid keeps beside it)."""
    return grid.locator("table").first.text_content() or ""


def tick_first_row(page, grid) -> None:
    """Tick the checkbox in the first column of the grid's first row, as a person does: a click
    selects the cell, Space toggles it (the edit starts a script run)."""
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 20, box["y"] + 35 + 17)  # header and row are 35 px high
    page.keyboard.press("Space")
    settle(page)
