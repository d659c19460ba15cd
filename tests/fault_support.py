"""A watcher among failing sources: ten sources, three of them failing in rotating ways while
the other seven keep publishing. Used by tests/test_watcher.py (seconds) and
benchmarks/watcher_faults.py (ten minutes).

    farm = FaultFarm(db_path, tmp_path)
    report = farm.run(seconds=20, fetch_timeout=1.0)
    report.missing()          # {} when every good source's every row was stored

Good sources: five feeds that publish an item every ``tick_s`` and two folders that get a new
file every few ticks. Failing sources: two feeds that answer each request with the next of an
empty body, a body that stalls (a byte every second), HTTP 500, a web page and a redirect to an
address nobody answers, and a folder that gets, tick by tick, a file without a text column, a
file whose name is not UTF-8 and holds binary garbage, and an empty file.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devmode.data import feeds, sources
from devmode.db import open_db
from devmode.monitor import watcher
from tests.net_support import LocalServer, Route, rss

GOOD_FEEDS = 5
GOOD_FOLDERS = 2
FEED_FAULTS = ("empty body", "stall", "HTTP 500", "web page", "nobody answers")
FOLDER_FAULTS = ("no text column", "undecodable name", "empty file")
EVERY_S = 5  # the smallest poll interval a source may have


@dataclass
class Report:
    seconds: float
    passes: int
    longest_gap_s: float  # between the ends of two passes, waits included
    watcher_alive: bool  # it was still running when asked to stop
    sources: list[dict] = field(default_factory=list)  # a row per source

    def missing(self) -> dict[str, int]:
        """Good datasets short of rows: {dataset: rows missing}."""
        return {
            s["dataset"]: s["published"] - s["stored"]
            for s in self.sources
            if s["good"] and s["stored"] != s["published"]
        }


class FaultFarm:
    def __init__(self, db_path: str, root: Path, *, tick_s: float = 1.0):
        self.db_path = db_path
        self.root = Path(root)
        self.tick_s = tick_s
        self.server = LocalServer()
        self.published: dict[str, int] = {}  # dataset -> items or rows published
        self.faults_seen: dict[str, set[str]] = {}
        self.ticks = 0
        self.folders: dict[str, Path] = {}
        with open_db(db_path) as db:
            settings = sources.SourceSettings(every=EVERY_S)
            for i in range(GOOD_FEEDS):
                self._publish_feed(i)
                sources.add_source(
                    db, f"feed{i}", feed=self.server.url(f"/good{i}.rss"), settings=settings
                )
            for i in range(GOOD_FOLDERS):
                folder = self.root / f"drops{i}"
                folder.mkdir(parents=True)
                self.folders[f"drops{i}"] = folder
                self.published[f"drops{i}"] = 0
                sources.add_source(db, f"drops{i}", folder=folder, settings=settings)
            for i in range(2):
                self.faults_seen[f"bad{i}"] = set()
                self.server.routes[f"/bad{i}.rss"] = self._failing_feed(f"bad{i}", 2 * i)
                sources.add_source(
                    db, f"bad{i}", feed=self.server.url(f"/bad{i}.rss"), settings=settings
                )
            bad_folder = self.root / "bad_drops"
            bad_folder.mkdir()
            self.folders["bad_drops"] = bad_folder
            self.faults_seen["bad_drops"] = set()
            sources.add_source(db, "bad_drops", folder=bad_folder, settings=settings)
        self._rotate()

    # ------------------------------------------------------------------------------------------

    def _publish_feed(self, i: int) -> None:
        name = f"feed{i}"
        n = self.published.get(name, 0) + 1
        self.published[name] = n
        start = dt.datetime(2020, 5, 18, tzinfo=dt.UTC)
        items = [
            {
                "title": f"Feed {i} headline {k}",
                "guid": f"urn:feed{i}:{k}",
                "published": start + dt.timedelta(minutes=k),
            }
            for k in range(n)
        ]
        self.server.routes[f"/good{i}.rss"] = Route(rss(items, title=f"Feed {i}"))

    def _drop_file(self, name: str) -> None:
        folder = self.folders[name]
        k = self.published[name]
        rows = "headline,date\n" + "".join(
            f"Drop {name} row {k + j} about markets,2020-05-{18 + j % 5}\n" for j in range(3)
        )
        path = folder / f"drop_{k:05d}.csv"
        path.with_suffix(".csv.part").write_text(rows)
        path.with_suffix(".csv.part").rename(path)  # dropped whole, as a careful writer does
        self.published[name] = k + 3

    def _failing_feed(self, name: str, offset: int):
        """A route that fails each request the next way (so every poll meets another fault)."""
        answers = {
            "empty body": Route(b""),
            "stall": Route(rss([{"title": "never whole", "guid": "x"}]), trickle_s=1.0),
            "HTTP 500": Route(status=500),
            "web page": Route(b"<html><body>Markets</body></html>", content_type="text/html"),
            "nobody answers": Route(status=302, location="http://127.0.0.1:9/gone.rss"),
        }
        served = [offset]

        def answer() -> Route:
            fault = FEED_FAULTS[served[0] % len(FEED_FAULTS)]
            served[0] += 1
            self.faults_seen[name].add(fault)
            return answers[fault]

        return answer

    def _rotate(self) -> None:
        """The failing folder gets its next kind of bad file."""
        fault = FOLDER_FAULTS[self.ticks % len(FOLDER_FAULTS)]
        self.faults_seen["bad_drops"].add(fault)
        folder = self.folders["bad_drops"]
        if fault == "no text column":
            (folder / f"prices_{self.ticks}.csv").write_text("price,volume\n1.5,9\n2.5,7\n")
        elif fault == "undecodable name":
            (folder / os.fsdecode(b"caf\xe9_%d.csv" % self.ticks)).write_bytes(b"\xff\xfe\x00\x01")
        else:
            (folder / f"empty_{self.ticks}.csv").write_bytes(b"")

    def tick(self) -> None:
        self.ticks += 1
        for i in range(GOOD_FEEDS):
            self._publish_feed(i)
        if self.ticks % 3 == 0:
            for name in (n for n in self.folders if n.startswith("drops")):
                self._drop_file(name)
        self._rotate()

    # ------------------------------------------------------------------------------------------

    def run(self, seconds: float, *, fetch_timeout: float = feeds.FETCH_TIMEOUT_S) -> Report:
        """Watch for ``seconds`` while the sources publish and fail; then stop publishing, let
        the folders settle, make every source due and run one last pass."""
        stop = threading.Event()
        passes, longest = [0], [0.0]
        watch = watcher.Watcher(self.db_path, fetch_timeout=fetch_timeout)
        last = [time.monotonic()]

        def counted(summary) -> None:
            now = time.monotonic()
            passes[0] += 1
            longest[0] = max(longest[0], now - last[0])
            last[0] = now

        thread = threading.Thread(
            target=watch.run, kwargs={"should_stop": stop.is_set, "on_pass": counted}, daemon=True
        )
        started = time.monotonic()
        thread.start()
        try:
            while time.monotonic() - started < seconds:
                time.sleep(self.tick_s)
                self.tick()
            alive = thread.is_alive()
        finally:
            stop.set()
            thread.join(timeout=fetch_timeout * 4 + 30)
        if thread.is_alive():
            raise RuntimeError("The watcher did not stop within its pass after being asked to.")
        time.sleep(2.5)  # the last files settle
        with open_db(self.db_path) as db:
            db.execute("update devmode_sources set next_poll_at = null")
        watch.run_pass()
        return self._report(time.monotonic() - started, passes[0], longest[0], alive)

    def _report(self, seconds: float, passes: int, longest: float, alive: bool) -> Report:
        rows = []
        with open_db(self.db_path) as db:
            for source in sources.list_sources(db):
                name = source.dataset
                stored = db[name].count if name in db.table_names() else 0
                rows.append(
                    {
                        "source": source.id,
                        "dataset": name,
                        "kind": source.kind,
                        "good": name in self.published,
                        "faults": ", ".join(sorted(self.faults_seen.get(name, ()))) or "-",
                        "published": self.published.get(name, 0),
                        "stored": stored,
                        "failures": source.failures,
                        "health": source.health(),
                    }
                )
        return Report(seconds, passes, longest, alive, rows)

    def close(self) -> None:
        self.server.close()
