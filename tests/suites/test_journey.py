"""Issues 17 and 32's journey in a real browser: a sampled suite built on the Suites page with
assertions (temperature 0.9, 5 repeats, a cell passes at 60%), run against the embedded model and
devmode's own serve endpoint side by side, twice: no regression, the flaky cells marked. Max
tokens cut to 3, run again: the regression flagged. A classifier assertion added and the first
run rescored without asking the model. Then the same suite, exported, is read by the CLI (a
CI step on a fresh database: no baseline, exit 2). Screenshots go to
$TMPDIR/devmode-suites-journey/."""

import subprocess
import sys
import tempfile
from pathlib import Path

from devmode.db import open_db
from devmode.suites import reports, store
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    choose,
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


def open_cell(page, grid, row: int, column: int) -> None:
    """Open a grid cell's editor as a person does: click the row's first cell (past the
    row-selection boxes of a table that takes new rows; a click on the + row adds one), move
    right with the arrow keys, press Enter."""
    settle(page)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 60, box["y"] + ROW * (row + 1) + ROW // 2)
    page.wait_for_timeout(200)
    for _ in range(column):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")


def leave_cell(page) -> None:
    settle(page)
    page.keyboard.press("Escape")
    page.wait_for_timeout(400)  # the grid redraws; an edit that did not take is made again
    settle(page)


def shows(grid, row: int, column: int) -> str:
    """The grid's accessible copy of a cell ('' while the row does not exist)."""
    cell = grid.locator(f"#glide-cell-{column + 1}-{row}")
    return (cell.text_content() or "") if cell.count() else ""


def edit_cells(page, grid, edits: list[tuple[int, int, str]]) -> None:
    """Type each ``(row, column, text)`` into the grid: open the cell, replace what is there,
    leave it (Tab). Keys pressed while the grid is redrawn after the last edit can go nowhere:
    each edit is checked, and made again until every text shows."""
    for _ in range(4 * len(edits)):
        missing = [edit for edit in edits if shows(grid, *edit[:2]) != edit[2]]
        if not missing:
            return
        row, column, text = missing[0]
        open_cell(page, grid, row, column)
        editor = page.locator(".gdg-input")  # the cell editor (text or number), once it opens
        try:
            editor.wait_for(timeout=5_000)
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the keys went elsewhere
            page.keyboard.press("Escape")
            continue
        editor.fill(text)
        editor.press("Tab")
        leave_cell(page)
    page.screenshot(path=SCREENSHOTS / "edit_failed.png", full_page=True)
    raise AssertionError(f"could not make the edits {edits}: the grid shows {grid_text(grid)!r}")


def choose_in_cell(page, grid, row: int, column: int, option: str) -> None:
    """Pick ``option`` in a grid's drop-down cell: open its list, type the option, take it
    (Enter); made again until the cell shows it."""
    for _ in range(4):
        if shows(grid, row, column) == option:
            return
        open_cell(page, grid, row, column)
        page.wait_for_timeout(500)
        page.keyboard.type(option)
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
        leave_cell(page)
    page.screenshot(path=SCREENSHOTS / "choose_failed.png", full_page=True)
    raise AssertionError(f"could not choose {option!r}: the grid shows {grid_text(grid)!r}")


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


def reports_of(db_path, *run_ids: int) -> list[dict]:
    with open_db(db_path) as db:
        return [reports.run_report(db, run_id) for run_id in run_ids]


def test_sampled_suite_noise_regression_and_rescore(browser, chat_server, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    db_path = tmp_path / "devmode.db"
    with StreamlitApp(db_path) as app:
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        open_page(page, app.url("Suites"))
        settle(page)
        assert "cannot run: Give the suite a name" in visible_text(page)

        # -- build: a name, the served endpoint answers the second variant; both sample at 0.9;
        # 5 repeats, a cell passes at 60%. The embedded variant's replies stop by themselves at
        # 20 tokens about 3 times in 5 (finish-reason: stop): cells that pass and fail.
        type_into(page, "Name", "company-profiles")
        grids = page.get_by_test_id("stDataFrame")
        variants = grids.filter(has_text="base_url").first
        edit_cells(page, variants, [(1, 2, chat_server.base_url), (0, 5, "0.9"), (1, 5, "0.9")])
        checks = grids.filter(has_text="finish-reason").first
        assert "not-icontains" in grid_text(checks)
        type_into(page, "Max tokens", "20", role="spinbutton")
        type_into(page, "Repeats per cell", "5", role="spinbutton")
        type_into(page, "Pass rate a cell needs", "0.6", role="spinbutton")
        page.screenshot(path=SCREENSHOTS / "01_suite.png", full_page=True)

        # -- run it twice, unchanged: sampling noise, not a regression; flaky cells marked -----
        for n in (1, 2):
            click(page, "Run suite")
            wait_for(lambda n=n: finished_runs(db_path) >= n, timeout=600, what=f"run {n}")
            settle(page)
        page.get_by_text("Compare runs").first.wait_for(timeout=60_000)
        settle(page)
        assert_healthy(page)
        first, second = reports_of(db_path, 1, 2)
        assert {c["repeats"] for c in first["cells"]} == {5}
        assert {c["variant"] for c in first["cells"]} == {
            "embedded",
            "one sentence",
        }
        diff = reports.compare(first, second)
        # noise: a false flag needs a cell to pass 5/5 and then 0/5 (p 1/252, BH over 4 cells):
        # about 1 in 1,000 pairs of runs at these pass rates
        assert diff["regressions"] == [], diff
        text = visible_text(page)
        assert reports.diff_text(diff) in text
        assert "Run 1 → run 2: 0 regressions" in text
        flaky = [c["cell"] for r in (first, second) for c in r["cells"] if c["flaky"]]
        assert flaky, "no cell passed and failed in 10 sampled replies: see 02_rerun.png"
        results = grids.filter(has_text="case").filter(has_text="one sentence").first
        shown = grid_text(results)
        for cell in second["cells"]:  # the grid shows run 2: 'pass 3/5 flaky'
            assert reports.verdict(cell) in shown
        if diff["flaky"]:
            assert reports.flaky_text(diff) in text
        # the chart over the runs (Plotly draws its title after the rest of the page)
        page.get_by_text("Pass rate per variant, run by run").first.wait_for(timeout=60_000)
        page.screenshot(path=SCREENSHOTS / "02_rerun.png", full_page=True)

        # -- max tokens cut to 3, on the left and in the served variant's cell: run again -------
        type_into(page, "Max tokens", "3", role="spinbutton")
        edit_cells(page, variants, [(1, 4, "3")])
        click(page, "Run suite")
        wait_for(lambda: finished_runs(db_path) >= 3, timeout=600, what="run 3")
        page.get_by_text("Run 2 → run 3").first.wait_for(timeout=60_000)
        settle(page)
        assert_healthy(page)
        _, third = reports_of(db_path, 2, 3)
        diff = reports.compare(second, third)
        assert diff["regressions"], diff  # a cell that passed 5/5 now passes 0/5: p = 1/252
        assert reports.diff_text(diff) in visible_text(page)
        table = grid_text(grids.filter(has_text="fell significantly").first)
        assert all(r["cell"] in table for r in diff["regressions"])
        page.screenshot(path=SCREENSHOTS / "03_regression.png", full_page=True)

        # -- a classifier assertion: a reply must not read as negative. Rescore run 1 -----------
        checks = grids.filter(has_text="finish-reason").first
        choose_in_cell(page, checks, 2, 1, "not-classifier")
        edit_cells(page, checks, [(2, 2, "negative"), (2, 3, "0.5"), (2, 5, "base")])
        choose(page, "Run", "run 1 of company-profiles (completed, "
               f"{first['summary']['passed']} of 4 cells passed)")  # fmt: skip
        click(page, "Rescore this run")
        wait_for(lambda: finished_runs(db_path) >= 4, timeout=120, what="the rescored run")
        settle(page)
        assert_healthy(page)
        with open_db(db_path) as db:
            rescored = store.get_run(db, 4)
            before, after = store.results(db, 1), store.results(db, 4)
        assert rescored.rescored_from == 1
        # the replies' own settings (max tokens 20), not the page's 3; the saved suite as it was
        assert rescored.as_suite().settings.limits.max_tokens == 20
        with open_db(db_path) as db:
            assert store.find_suite(db, "company-profiles").settings.limits.max_tokens == 3
        run_shown = page.get_by_role("combobox", name="Run", exact=True).input_value()
        assert (
            run_shown.startswith("run 4 of company-profiles") and "rescored from run 1" in run_shown
        )
        # the model was not asked: the same sampled replies, now with the classifier's check
        assert [r["text"] for r in after] == [r["text"] for r in before]
        kinds = [{c["assertion"]["type"] for c in r["checks"]} for r in after]
        assert all("not-classifier" in k for k in kinds), kinds
        page.screenshot(path=SCREENSHOTS / "04_rescored.png", full_page=True)

        # -- the same suite from the CLI fails a CI step ----------------------------------------
        with page.expect_download() as download:
            page.get_by_role("button", name="Export YAML").click()
        suite_file = tmp_path / "company-profiles.yaml"
        download.value.save_as(suite_file)
    exported = suite_file.read_text()
    assert "max_tokens: 3" in exported and "not-classifier" in exported
    ci = bench_run(tmp_path / "ci.db", suite_file, "--baseline", "1")
    assert ci.returncode == 2 and "neither a stored suite run" in ci.stderr  # a fresh database
    # (a regression's exit 1 from the same command: tests/suites/test_runner.py, on a local
    # endpoint; here it would load both models again in a new process)
