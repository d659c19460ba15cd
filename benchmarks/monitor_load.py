"""The Monitor page under load: browser sessions at once, with and without a scoring job writing.

    $ .venv/bin/python benchmarks/monitor_load.py              # 1 and 5 sessions, idle and busy
    $ .venv/bin/python benchmarks/monitor_load.py --sessions 5 --loads 10

The app (`streamlit run app.py`) serves a database holding the 9,958 Benzinga headlines, scored,
with an alert rule. Each session is a chromium tab (Playwright, one browser) that loads the
Monitor page and switches the period (day / week / month) in turn; a render is timed from the
request until the trend chart is drawn and the script has finished, as the person sees it.
"Busy": a scoring job (its own process, as from the page) writes 2,048-row chunks to the same
SQLite file throughout. Everything shares this machine's cores: server, browser and job.
The model is a 2-layer BERT (hidden size 64) made here, so the job writes as fast as SQLite
lets it; what is measured is the app, not a model. Prints p50 / p95 / max per condition.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HEADLINES = ROOT.parent / "shared" / "data" / "dated_headlines" / "headlines.csv"


def build_database(folder: Path, busy_rows: int) -> tuple[str, int]:
    """The database: headlines scored and an alert rule; a bigger dataset left to score."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from devmode.data import ingest
    from devmode.data.readers import read_upload
    from devmode.db import open_db
    from devmode.finetune import worker
    from devmode.models import registry, runs
    from devmode.models.config import TrainConfig
    from devmode.monitor import alerts, monitoring

    with open(HEADLINES, newline="", encoding="utf-8") as f:
        headlines = list(csv.DictReader(f))
    words = sorted({w.lower() for r in headlines[:3000] for w in r["text"].split() if w.isalpha()})
    model_dir = folder / "small-bert"
    BertTokenizerFast(
        vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    ).save_pretrained(model_dir)
    BertModel(
        BertConfig(
            vocab_size=len(words) + 5,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=128,
        )
    ).save_pretrained(model_dir)
    rng = random.Random(0)
    labelled = folder / "labelled.csv"
    with open(labelled, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        for r in headlines[:600]:
            writer.writerow(
                {"text": r["text"], "label": rng.choice(["negative", "neutral", "positive"])}
            )
    busy = folder / "busy.csv"
    with open(busy, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["date", "ticker", "text"])
        writer.writeheader()
        for i in range(busy_rows):
            r = headlines[i % len(headlines)]
            writer.writerow({"date": r["date"], "ticker": r["ticker"], "text": r["text"]})
    db_path = str(folder / "devmode.db")
    with open_db(db_path) as db:
        ingest.insert_upload(
            db, read_upload(labelled), "labelled", ingest.ColumnMapping("text", "label")
        )
        dated = ingest.ColumnMapping("text", date="date", ticker="ticker")
        # the busy one first: the Monitor page opens on the newest dataset, the headlines
        ingest.insert_upload(db, read_upload(busy), "zz_busy", dated)
        ingest.insert_upload(db, read_upload(HEADLINES), "headlines", dated)
        run = runs.create_run(
            db,
            "labelled",
            TrainConfig(base_model=str(model_dir), epochs=1, freeze_embeddings=False),
        )
    worker.execute_run(db_path, run.id)
    with open_db(db_path) as db:
        registry.promote(db, run.id, "sentiment")
        monitoring.score_dataset(db, "headlines")
        alerts.add_alert_rule(db, "headlines", kind="spike", threshold=2.0, period="week")
        alerts.evaluate_alerts(db, "headlines")
    return db_path, run.id


async def session(browser, url: str, loads: int, times: list, errors: list[str]) -> None:
    """One person: a full load of the page, then two reruns (another period), and again."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    for i in range(loads):
        start = time.perf_counter()
        if i % 3 == 0:
            await page.goto(url, wait_until="domcontentloaded")
        else:  # a rerun: pick the next period
            period = ["day", "week", "month"][i % 3]
            await (
                page.get_by_role("combobox", name="Period", exact=True)
                .locator("xpath=following-sibling::button")
                .click()
            )
            await page.get_by_role("option", name=period, exact=True).click()
        await page.wait_for_timeout(100)
        await page.wait_for_selector("[data-testid=stPlotlyChart]", timeout=120_000)
        await page.wait_for_selector(
            "[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000
        )
        times.append(("load" if i % 3 == 0 else "rerun", time.perf_counter() - start - 0.1))
        text = await page.locator("[data-testid=stMain]").inner_text()
        if (
            "database is locked" in text.lower()
            or await page.locator("[data-testid=stException]").count()
        ):
            errors.append(text[-300:])
    await page.close()


async def measure(url: str, sessions: int, loads: int) -> tuple[list[float], list[str]]:
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

    times: list[float] = []
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        await session(browser, url, 1, [], [])  # warm the server's caches once
        await asyncio.gather(
            *(session(browser, url, loads, times, errors) for _ in range(sessions))
        )
        await browser.close()
    return times, errors


def server_side(db_path: str, sessions: int, loads: int) -> tuple[list, list[str]]:
    """The same sessions without browsers: the page script itself, run by Streamlit's AppTest
    in one process, ``sessions`` threads at once (as the server runs its sessions): what the
    server's cores do per render, whatever the browsers on the analysts' machines do."""
    import os
    import threading

    from streamlit.testing.v1 import AppTest

    os.environ["DEVMODE_DB"] = db_path
    times, errors, harness_failures = [], [], []

    def person() -> None:
        for i in range(loads):
            at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=120)
            at.session_state["monitor_period"] = ["week", "day", "month"][i % 3]
            start = time.perf_counter()
            try:
                at.run()
            except Exception as e:  # noqa: BLE001 - AppTest's own harness is not thread-safe
                harness_failures.append(f"{type(e).__name__}: {e}")
                continue
            times.append(("script", time.perf_counter() - start))
            errors.extend(str(e.value) for e in at.exception)

    threads = [threading.Thread(target=person) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if harness_failures:
        print(
            f"  ({len(harness_failures)} of {sessions * loads} AppTest runs failed inside "
            f"Streamlit's test harness, which is not made for threads: "
            f"{harness_failures[0][:90]}; left out)"
        )
    return times, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--loads", type=int, default=9, help="Renders per session.")
    parser.add_argument("--busy-rows", type=int, default=400_000)
    args = parser.parse_args()
    from devmode.db import open_db
    from devmode.monitor import score_jobs
    from tests.browser_support import StreamlitApp

    n = args.sessions
    conditions = [
        ("browsers", 1, False),
        ("browsers", n, False),
        ("browsers", n, True),
        ("server only", 1, False),
        ("server only", n, True),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        db_path, _ = build_database(Path(tmp), args.busy_rows)
        with StreamlitApp(db_path) as app:
            for where, sessions, busy in conditions:
                label = f"{where}, {sessions} session{'s' if sessions > 1 else ''}, " + (
                    "job writing" if busy else "idle"
                )
                if busy:
                    with open_db(db_path) as db:
                        job = score_jobs.create_job(db, "zz_busy")
                    score_jobs.start_job(db_path, job.id)
                    time.sleep(3)  # the worker loads its model, then writes chunk after chunk
                    with open_db(db_path) as db:
                        before = score_jobs.get_job(db, job.id).rows_done
                if where == "browsers":
                    times, errors = asyncio.run(measure(app.url("Monitor"), sessions, args.loads))
                else:
                    times, errors = server_side(db_path, sessions, args.loads)
                written = None
                if busy:
                    with open_db(db_path) as db:
                        written = score_jobs.get_job(db, job.id).rows_done - before
                        score_jobs.request_cancel(db, job.id)
                    time.sleep(2)  # the job stops after its chunk
                results.append((label, times, errors, written))
                print(f"  {label}: {len(times)} renders", flush=True)
    print()
    print(
        f"{'condition':<36} {'render':<7} {'n':>4} {'p50':>7} {'p95':>7} {'max':>7} "
        f"{'errors':>7} {'rows written meanwhile':>23}"
    )
    for label, times, errors, written in results:
        for kind in ("load", "rerun", "script"):
            values = [t for k, t in times if k == kind]
            if not values:
                continue
            print(
                f"{label:<36} {kind:<7} {len(values):>4} {statistics.median(values):>6.2f}s "
                f"{percentile(values, 0.95):>6.2f}s {max(values):>6.2f}s {len(errors):>7} "
                f"{'' if written is None else f'{written:,}':>23}"
            )


if __name__ == "__main__":
    main()
