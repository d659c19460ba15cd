"""Issue 29's page parts in a real browser: the Fine-tune page's Evaluations tab with a k-fold
estimate, its folds, the out-of-fold reliability diagram and two recipes compared. The
evaluations train the tiny test model in-process; the page only reads them. Screenshots go to
``$TMPDIR/devmode-evaluations-journey/``."""

import tempfile
from pathlib import Path

from devmode.db import open_db
from devmode.finetune import evaluations
from tests.browser_support import StreamlitApp, assert_healthy, grid_text, open_page, settle
from tests.conftest import store_tiny_dataset, tiny_config

SCREENSHOTS = Path(tempfile.gettempdir()) / "devmode-evaluations-journey"


def test_an_estimate_with_its_folds_reliability_and_a_comparison(
    browser, db_path, tmp_path, tiny_model_dir
):
    store_tiny_dataset(db_path, tmp_path)
    for epochs in (3, 1):
        with open_db(db_path) as db:
            found = evaluations.create_evaluation(
                db, "tiny", tiny_config(tiny_model_dir, epochs=epochs), folds=2, fold_seed=42
            )
        evaluations.execute_evaluation(db_path, found.id)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with StreamlitApp(db_path) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        open_page(page, app.url("Fine_tune"))
        page.get_by_role("button", name="Estimate with k folds").wait_for()
        page.get_by_role("tab", name="Evaluations").click()
        settle(page)
        page.get_by_text("2-fold estimate").first.wait_for(timeout=30_000)
        # plotly draws its title after the script run has ended
        page.get_by_text("Reliability (out-of-fold predictions)").first.wait_for(timeout=30_000)
        grids = page.get_by_test_id("stDataFrame")
        texts = [grid_text(grids.nth(i)) for i in range(grids.count())]
        assert any("95% interval" in t and "macro-F1" in t for t in texts), texts
        assert any("temperature" in t and "best epoch" in t for t in texts), texts
        page.get_by_text("Compare two evaluations").first.wait_for()
        assert any("difference" in t and "interval" in t for t in texts), texts
        assert "Nadeau and Bengio" in page.locator("[data-testid=stMain]").inner_text()
        assert_healthy(page)
        page.screenshot(path=SCREENSHOTS / "01_evaluations.png", full_page=True)
