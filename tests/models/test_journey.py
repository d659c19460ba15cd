"""Issue 28's journey in a real browser: the Playground with the base model and a fine-tuned
run side by side, the words behind each answer, the disagreements, the same view from its
address in a new tab; then `classify --json --explain` on the same texts agrees."""

import json
import re
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    choose,
    click,
    expand,
    grid_text,
    open_page,
    settle,
    visible_text,
)
from tests.conftest import run_cli

SCREENSHOTS = Path(tempfile.gettempdir()) / "devmode-playground-journey"
TEXTS = ["shares fell on awful loss", "great profit as sales rose", "flat steady shares"]


def pick_models(page, patterns: list[str]) -> None:
    """Empty the Models box (Backspace removes the last choice), then pick the option matching
    each pattern in turn."""
    box = page.get_by_role("combobox", name="Models")
    box.click()
    for _ in range(3):
        box.press("Backspace")
        settle(page)
    for pattern in patterns:
        box.click()
        page.get_by_role("option", name=re.compile(pattern)).first.click()
        settle(page)
    page.keyboard.press("Escape")
    settle(page)


def answers(page) -> dict[str, list[tuple[str, list[str]]]]:
    """{model title: [(label, top words) per text]} as the page shows them."""
    text = visible_text(page)
    found: dict[str, list[tuple[str, list[str]]]] = {}
    pattern = re.compile(r"^(.+?): (\w+) \(\d+%\)\n(?:[\s\S]*?)Top words: (.*)$", re.M)
    for title, label, words in pattern.findall(text):
        top = [] if words.startswith("none") else words.split(", ")
        found.setdefault(title.strip(), []).append((label, top))
    return found


def test_two_models_side_by_side_why_and_the_same_view_elsewhere(browser, news_copy):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with StreamlitApp(news_copy) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        open_page(page, app.url("Playground"))
        links = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
        titles = [text.strip().split("\n")[-1] for text in links]
        assert titles.index("Playground") == titles.index("Fine-tune") + 1

        pick_models(page, [r"^run 1 \(tiny", r"^base \("])
        field = page.get_by_role("textbox", name="Texts, one per line")
        field.fill("\n".join(TEXTS))
        field.press("Control+Enter")
        settle(page)
        page.get_by_text("Top words:").first.wait_for(timeout=120_000)
        settle(page)
        page.screenshot(path=SCREENSHOTS / "01_side_by_side.png", full_page=True)

        charts = page.locator("[data-testid=stPlotlyChart]")
        assert charts.count() == 2 * len(TEXTS)  # a bar chart per text and model
        shown = answers(page)
        tuned = shown["run 1 (tiny)"]
        base_title = next(t for t in shown if t.startswith("base ("))
        assert len(tuned) == len(shown[base_title]) == len(TEXTS)
        highlighted = page.locator("span[title]")
        assert highlighted.count() > 0
        # the two models do not weigh the words alike
        assert tuned != shown[base_title]

        expand(page, "Disagreements: test rows where the models differ")
        choose(page, "Labelled dataset", "tiny")
        click(page, "Load disagreements")
        page.get_by_text("Top words:").first.wait_for(timeout=120_000)
        settle(page)
        expand(page, "Disagreements: test rows where the models differ")  # a rerun closes it
        page.screenshot(path=SCREENSHOTS / "02_disagreements.png", full_page=True)
        assert "agree on every test row" not in visible_text(page)
        grid = page.get_by_test_id("stDataFrame").first
        grid.wait_for(timeout=120_000)
        assert "run 1 (tiny)" in grid_text(grid)
        assert_healthy(page)

        # the address holds the view: a new tab opened at it shows the same answers
        address = page.url
        asked = parse_qs(urlparse(address).query)
        assert asked["models"][0].split(",") == ["1", "base"]
        other = browser.new_page(viewport={"width": 1400, "height": 1400})
        open_page(other, address)
        other.get_by_text("Top words:").first.wait_for(timeout=120_000)
        settle(other)
        assert answers(other) == answers(page)
        other.screenshot(path=SCREENSHOTS / "03_same_view_new_tab.png", full_page=True)
        assert_healthy(other)

        # back to the three headlines: classify gives the same labels and top words
        open_page(page, app.url("Playground") + "?models=1&text=" + "%0A".join(TEXTS))
        page.get_by_text("Top words:").first.wait_for(timeout=120_000)
        settle(page)
        in_page = answers(page)["run 1 (tiny)"]
    result = run_cli(news_copy, "classify", *TEXTS, "--model", "1", "--json", "--explain")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    from devmode.models.classify import top_words

    assert [(r["label"], top_words(r)) for r in rows] == in_page
