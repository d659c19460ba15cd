"""A person's whole journey through the app in a real browser (chromium via Playwright):
upload -> map -> fine-tune (reload mid-run) -> report -> promote -> score -> trend and alert ->
chat limits. The live Monitor (a feed, the watcher, a webhook, the wall) is
tests/monitor/test_journey.py. Screenshots of every step go to $TMPDIR/devmode-journey/."""

import csv
import json
import re
import tempfile
from pathlib import Path

from devmode.db import open_db
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    choose,
    click,
    expand,
    open_page,
    settle,
    type_into,
    visible_text,
    wait_for_text,
)
from tests.conftest import HEADLINES, PHRASEBANK_ALLAGREE, read_slice

SCREENSHOTS = Path(tempfile.gettempdir()) / "devmode-journey"
# The sidebar's titles, in the declared order (devmode.ui.PAGES)
NAVIGATION = ["Home", "Datasets", "Fine-tune", "Playground", "Monitor", "Chat sandbox", "Suites"]


def balanced_slice(path: Path, per_label: int) -> list[dict]:
    """``per_label`` rows of each label, spread over the file (PhraseBank is 61% neutral)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    chosen = []
    for label in sorted({r["label"] for r in rows}):
        of_label = [r for r in rows if r["label"] == label]
        chosen += of_label[:: max(1, len(of_label) // per_label)][:per_label]
    return chosen


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


class Journey:
    """Numbered screenshots of one person's pages."""

    def __init__(self, page):
        self.page, self.count = page, 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=SCREENSHOTS / f"{self.count:02d}_{name}.png", full_page=True)


def progress_of(page) -> tuple[int, int]:
    """(step, total) from the run panel's status line, e.g. "running · step 12/45"."""
    found = re.search(r"step ([\d,]+)/([\d,]+)", visible_text(page))
    if not found:
        return 0, 0
    return tuple(int(x.replace(",", "")) for x in found.groups())


def test_a_person_goes_from_upload_to_alerts_to_chat_limits(browser, tmp_path):
    phrasebank = write_csv(
        tmp_path / "phrasebank_slice.csv", balanced_slice(PHRASEBANK_ALLAGREE, 60)
    )
    headlines = write_csv(tmp_path / "headlines_slice.csv", read_slice(HEADLINES, 200, 46))
    db_path = tmp_path / "devmode.db"
    with StreamlitApp(db_path) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        journey = Journey(page)

        # -- home ---------------------------------------------------------------------------
        open_page(page, app.url())
        assert "devmode" in visible_text(page)
        links = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
        titles = [text.strip().split("\n")[-1] for text in links]  # after the icon's name
        assert titles == NAVIGATION
        journey.shot("home")

        # -- upload PhraseBank, see the suggested roles, save ---------------------------------
        open_page(page, app.url("Datasets"))
        page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(phrasebank)
        wait_for_text(page, "Read phrasebank_slice.csv")
        settle(page)
        text = visible_text(page)
        assert "CSV" in text and "2 columns" in text
        type_into(page, "Dataset name", "phrasebank")
        journey.shot("datasets_mapped")
        click(page, "Save dataset")
        wait_for_text(page, "Saved dataset phrasebank (180 rows)")
        journey.shot("datasets_saved")

        # -- fine-tune a short run and watch the bar move ------------------------------------
        open_page(page, app.url("Fine_tune"))
        type_into(page, "Epochs", "2", role="spinbutton")
        type_into(page, "Batch size", "16", role="spinbutton")
        type_into(page, "Max length (tokens)", "64", role="spinbutton")
        expand(page, "Hardware and logging")
        type_into(page, "Log every (steps)", "2", role="spinbutton")
        click(page, "Start training")
        wait_for_text(page, "Started run 1")
        page.get_by_role("tab", name="Runs").click()
        settle(page)
        seen = []
        for _ in range(240):  # the live panel refreshes itself every 2 s
            step, total = progress_of(page)
            if step and (not seen or step != seen[-1]):
                seen.append(step)
            if len(seen) >= 2 and step < total:
                break
            page.wait_for_timeout(500)
        assert len(seen) >= 2 and seen[-1] > seen[0], f"the bar did not move: {seen}"
        journey.shot("training_live")

        # -- meanwhile, a second person uploads and browses: no "database is locked" ----------
        other = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(other, app.url("Datasets"))
        other.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(headlines)
        wait_for_text(other, "Read headlines_slice.csv")
        settle(other)
        type_into(other, "Dataset name", "headlines")
        click(other, "Save dataset")
        wait_for_text(other, "Saved dataset headlines (200 rows)")
        other.get_by_role("tab", name="Stored datasets").click()
        settle(other)
        assert_healthy(other)
        open_page(other, app.url("Monitor"))
        assert_healthy(other)
        other.close()

        # -- reload mid-run: the panel re-attaches ------------------------------------------------
        before_reload = progress_of(page)
        page.reload(wait_until="domcontentloaded")
        settle(page)
        page.get_by_role("tab", name="Runs").click()
        settle(page)
        after_reload = progress_of(page)
        assert after_reload[0] >= before_reload[0] and after_reload[1] == before_reload[1]
        assert "running" in visible_text(page) or "completed" in visible_text(page)
        journey.shot("training_after_reload")

        # -- the before / after report ----------------------------------------------------------
        wait_for_text(page, "Most confident mistakes", timeout=300_000)  # the test report
        settle(page)
        text = visible_text(page)
        assert "completed" in text and "Most confident mistakes" in text
        charts = page.locator("[data-testid=stPlotlyChart]")
        assert charts.count() >= 4  # loss, validation, before/after, confusion matrix
        wait_for_text(page, "Confusion matrix (test split)")  # plotly draws after the run ends
        journey.shot("training_report")
        assert_healthy(page)

        # -- promote ----------------------------------------------------------------------------
        page.get_by_role("tab", name="Models").click()
        settle(page)
        click(page, "Make active sentiment model")
        with open_db(db_path) as db:
            assert db.execute(
                "select run_id from devmode_models where active_as = 'sentiment'"
            ).fetchone() == (1,)
        journey.shot("model_promoted")

        # -- score the dated headlines, see the trend and an alert -----------------------------
        open_page(page, app.url("Monitor"))
        assert "Active sentiment model: run 1" in visible_text(page)
        click(page, "Score new rows")
        wait_for_text(page, "Scoring job 1 completed", timeout=300_000)
        settle(page)
        # the chart's title is drawn by plotly.js after the script run has ended: wait for it
        wait_for_text(page, "Sentiment: headlines · per week")
        journey.shot("monitor_trend")
        expand(page, "Alert rules")
        type_into(page, "Threshold", "0.2", role="spinbutton")
        type_into(page, "Minimum texts", "1", role="spinbutton")
        click(page, "Add rule")
        wait_for_text(page, "negative of")
        assert re.search(r"\d+% negative of \d+ texts?", visible_text(page))
        journey.shot("monitor_alerts")
        assert_healthy(page)

        # -- the chat sandbox: a max-token limit, then a banned word ---------------------------
        open_page(page, app.url("Chat_sandbox"))

        def greedy_20_tokens():
            type_into(page, "Max tokens", "20", role="spinbutton")
            expand(page, "Sampling")
            page.get_by_role("slider", name="Temperature (0 = greedy)").press("Home")
            settle(page)

        greedy_20_tokens()
        type_into(page, "Message", "What is a bond?")
        click(page, "Send")
        wait_for_text(page, "stopped: max tokens (20)")
        settle(page)
        reply = page.locator("[data-testid=stChatMessage]").nth(1).inner_text()
        journey.shot("chat_max_tokens")

        word = next(w for w in reply.split()[3:] if w.isalpha() and len(w) >= 5)
        choose(page, "Conversation", "New conversation")  # the same context as the first reply
        greedy_20_tokens()
        type_into(page, "Banned words or phrases", word)
        type_into(page, "Message", "What is a bond?")
        click(page, "Send")
        wait_for_text(page, f"stopped: banned word '{word}'")
        journey.shot("chat_banned_word")
        assert_healthy(page)
        with page.expect_download() as download:  # the export is built when it is asked for
            page.get_by_role("button", name="Export JSON").click()
        exported = json.loads(Path(download.value.path()).read_text())
        assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
        assert exported["messages"][1]["report"]["stopped_by"] == "banned_word"

        # a conversation's address reopens it, as links made before the navigation did
        open_page(page, app.url("Chat_sandbox") + "?conversation=1")
        wait_for_text(page, "stopped: max tokens (20)")
        assert f"stopped: banned word '{word}'" not in visible_text(page)

        with open_db(db_path) as db:
            assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
            assert db["devmode_conversations"].count == 2
    assert len(list(SCREENSHOTS.glob("*.png"))) == journey.count == 11


def test_a_fresh_server_opened_at_a_page_shows_the_declared_navigation(browser, tmp_path):
    """After a restart, a wall screen opens straight at /Monitor: Streamlit's first run there
    would list the pages/ folder (with "app"); the page switches to the declared navigation."""
    with StreamlitApp(tmp_path / "devmode.db") as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, app.url("Monitor"))
        wait_for_text(page, "No sentiment model is active yet")
        links = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
        assert [text.strip().split("\n")[-1] for text in links] == NAVIGATION
        assert page.url.endswith("/Monitor")
        assert page.title() == "Monitor · devmode"
        assert_healthy(page)
