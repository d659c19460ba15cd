"""Issue 17's journey in a real browser: a suite built on the Suites page with assertions, run
against the embedded model and devmode's own serve endpoint side by side, a limit changed, run
again, the regression diff read; then the same suite, exported, fails a CI step from the CLI.
Screenshots go to $TMPDIR/devmode-suites-journey/."""

import subprocess
import sys
import tempfile
from pathlib import Path

from devmode.db import open_db
from devmode.suites import store
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    click,
    grid_text,
    open_page,
    settle,
    type_into,
    visible_text,
)
from tests.conftest import ROOT, wait_for

SCREENSHOTS = Path(tempfile.gettempdir()) / "devmode-suites-journey"
ROW = 35  # a grid's header and rows are 35 px high


def edit_cells(page, grid, edits: list[tuple[int, int, str]]) -> None:
    """Type each ``(row, column, text)`` into the grid as a person does: click the row's first
    cell (past the row-selection boxes of a table that takes new rows), move right with the
    arrow keys, open the editor (Enter), replace what is there, leave the cell (Tab). Keys
    pressed while the grid is redrawn after the last edit can go nowhere: each edit is checked,
    and made again until every text shows."""

    def shows(row: int, column: int) -> str:  # the grid's accessible copy of a cell
        return grid.locator(f"#glide-cell-{column + 1}-{row}").text_content() or ""

    for _ in range(4 * len(edits)):
        missing = [edit for edit in edits if shows(*edit[:2]) != edit[2]]
        if not missing:
            return
        row, column, text = missing[0]
        settle(page)
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 60, box["y"] + ROW * (row + 1) + ROW // 2)
        page.wait_for_timeout(200)
        for _ in range(column):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        editor = page.locator("textarea.gdg-input")  # the grid's cell editor, once it opens
        try:
            editor.wait_for(timeout=5_000)
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the keys went elsewhere
            page.keyboard.press("Escape")
            continue
        editor.fill(text)
        editor.press("Tab")
        settle(page)
        page.keyboard.press("Escape")
        page.wait_for_timeout(1000)
        settle(page)
    page.screenshot(path=SCREENSHOTS / "edit_failed.png", full_page=True)
    raise AssertionError(f"could not make the edits {edits}: the grid shows {grid_text(grid)!r}")


def bench_run(db_path, suite_file, *options: str) -> subprocess.CompletedProcess:
    """``python -m devmode bench run``, as a CI step calls it."""
    command = ["-m", "devmode", "--db", str(db_path), "bench", "run", str(suite_file)]
    return subprocess.run(
        [sys.executable, *command, *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def finished_runs(db_path) -> int:
    with open_db(db_path) as db:
        return len(store.finished_runs(store.list_runs(db)))


def test_build_run_side_by_side_change_a_limit_and_see_the_regression(
    browser, chat_server, tmp_path
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    db_path = tmp_path / "devmode.db"
    with StreamlitApp(db_path) as app:
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        open_page(page, app.url("Suites"))
        settle(page)
        assert "cannot run: Give the suite a name" in visible_text(page)

        # -- build: a name, the served endpoint answers the second variant ----------------------
        type_into(page, "Name", "company-profiles")
        grids = page.get_by_test_id("stDataFrame")
        variants = grids.filter(has_text="base_url").first
        edit_cells(page, variants, [(1, 2, chat_server.base_url)])
        checks = grids.filter(has_text="finish-reason").first
        assert "not-icontains" in grid_text(checks)
        page.screenshot(path=SCREENSHOTS / "01_suite.png", full_page=True)

        # -- run it: the embedded model and the endpoint side by side --------------------------
        click(page, "Run suite")
        wait_for(lambda: finished_runs(db_path) >= 1, timeout=600, what="the first run")
        page.get_by_text("Every reply passed its checks").first.wait_for(timeout=60_000)
        settle(page)
        assert_healthy(page)
        text = visible_text(page)
        assert "Every reply passed its checks (4)." in text
        with open_db(db_path) as db:
            first = store.results(db, 1)
            assert store.get_run(db, 1).label() == (
                "run 1 of company-profiles (completed, 4 of 4 cells passed)"
            )
        assert {r["variant"] for r in first} == {"embedded", "one sentence"}
        assert {r["text"] for r in first if r["variant"] == "one sentence"}  # the endpoint's
        page.screenshot(path=SCREENSHOTS / "02_first_run.png", full_page=True)

        # -- a limit changed: max tokens on the left (the embedded variant's cell is blank) is 3;
        # the served variant keeps its own 48. Run again.
        type_into(page, "Max tokens", "3", role="spinbutton")
        click(page, "Run suite")
        wait_for(lambda: finished_runs(db_path) >= 2, timeout=600, what="the second run")
        page.get_by_text("Compare runs").first.wait_for(timeout=60_000)
        settle(page)
        assert_healthy(page)
        text = visible_text(page)
        assert "Run 1 → run 2: 2 regressions (a significant fall, at 0.05), 0 fixes" in text
        diff = page.get_by_test_id("stDataFrame").filter(has_text="fell significantly").first
        assert "p1/c1/embedded" in grid_text(diff) and "finish-reason" in grid_text(diff)
        page.screenshot(path=SCREENSHOTS / "03_regression.png", full_page=True)

        # -- the same suite from the CLI fails a CI step ----------------------------------------
        with page.expect_download() as download:
            page.get_by_role("button", name="Export YAML").click()
        suite_file = tmp_path / "company-profiles.yaml"
        download.value.save_as(suite_file)
    assert "max_tokens: 3" in suite_file.read_text()
    ci = bench_run(tmp_path / "ci.db", suite_file, "--baseline", "1")
    assert ci.returncode == 2 and "neither a stored suite run" in ci.stderr  # a fresh database
    ci = bench_run(db_path, suite_file, "--baseline", "1")
    assert ci.returncode == 1, ci.stderr[-2000:]
    assert "REGRESSION p1/c1/embedded: passed in the baseline" in ci.stderr
