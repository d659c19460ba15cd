"""Stories, not copies: texts that tell the same story (syndicated across feeds, re-posted with a
new link, lightly re-worded) are collapsed into one story, so trends and alerts can count each
story once and the drill-down shows it once with its sources.

    assign_stories(db, "wire")     # every row not yet in a story: joined to a near-duplicate or new

Near-duplicates are found with MinHash over character 5-gram shingles and locality-sensitive
hashing (``datasketch``): a row joins the story of an earlier row whose estimated Jaccard
similarity is at least ``THRESHOLD`` and whose date is at most ``WINDOW_DAYS`` away, among the
latest ``CANDIDATE_STORIES`` stories: copies arrive close together, while templated headlines
("Earnings Scheduled For February 15") recur months apart and are different stories. ``devmode_story_rows`` maps each row to its story's first row; a
prediction's ``repeat`` is 1 for every row after a story's first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import ingest
from devmode.data.dates import parse_date
from devmode.data.near_duplicates import NUM_PERM, minhashes

if TYPE_CHECKING:
    from datasketch import MinHash

# The estimated Jaccard similarity above which two texts are one story. On the 9,958 shared
# Benzinga headlines, 0.7 joins 492 rows to an earlier story (the same headline filed under
# several tickers, "UPDATE:" re-posts); 0.5 joined 862, many of them templated headlines about
# different companies ("X Reports Second Quarter Results").
THRESHOLD = 0.7
# How many of the latest stories a new row is compared with, and how far apart in days a copy
# may be dated (rows without a readable date are compared with every candidate).
CANDIDATE_STORIES = 5000
WINDOW_DAYS = 2


@dataclass(frozen=True)
class StoriesSummary:
    rows: int  # rows placed in a story by this call
    repeats: int  # of them, rows that joined an earlier story


def assign_stories(db: Database, dataset_name: str) -> StoriesSummary:
    """Put every row of the dataset that has no story yet into one, in row order (one
    transaction); predictions already stored learn whether their row is a repeat."""
    dataset = ingest.get_dataset(db, dataset_name)
    table, text = quote_identifier(dataset.name), quote_identifier(dataset.mapping.text)
    date = f"t.{quote_identifier(dataset.mapping.date)}" if dataset.mapping.date else "null"
    with db.atomic():
        new = db.execute(
            f"""select t.rowid, t.{text}, {date} from {table} t left join devmode_story_rows s
                  on s.dataset_id = ? and s.row_id = t.rowid
                where s.row_id is null order by t.rowid""",
            [dataset.id],
        ).fetchall()
        if not new:
            return StoriesSummary(0, 0)
        heads = db.execute(
            f"""select s.row_id, t.{text}, {date} from devmode_story_rows s
                join {table} t on t.rowid = s.row_id
                where s.dataset_id = ? and s.row_id = s.story_id
                order by s.row_id desc limit {CANDIDATE_STORIES}""",
            [dataset.id],
        ).fetchall()
        from datasketch import MinHashLSH  # imported here: see near_duplicates

        index = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
        known: dict[int, tuple[MinHash, dt.date | None]] = {}
        for (row_id, _, raw), signature in zip(heads, minhashes(r[1] for r in heads), strict=True):
            if signature is not None:
                index.insert(row_id, signature)
                known[row_id] = signature, _day(raw)
        placed = []
        for (row_id, _, raw), signature in zip(new, minhashes(r[1] for r in new), strict=True):
            story, day = row_id, _day(raw)
            if signature is not None:
                matches = []
                for candidate in index.query(signature):
                    other, other_day = known[candidate]
                    similarity = signature.jaccard(other)
                    if similarity >= THRESHOLD and _close(day, other_day):
                        matches.append((similarity, -candidate))
                if matches:
                    story = -max(matches)[1]  # the most similar; the earliest on a tie
                else:
                    index.insert(row_id, signature)
                    known[row_id] = signature, day
            placed.append((dataset.id, row_id, story))
        db.conn.executemany(
            "insert into devmode_story_rows (dataset_id, row_id, story_id) values (?, ?, ?)",
            placed,
        )
        db.conn.executemany(
            "update devmode_predictions set repeat = ? where dataset_id = ? and row_id = ?",
            [(int(story != row_id), dataset_id, row_id) for dataset_id, row_id, story in placed],
        )
    return StoriesSummary(len(placed), sum(story != row_id for _, row_id, story in placed))


def _day(raw) -> dt.date | None:
    parsed = parse_date(raw)
    return dt.date.fromisoformat(parsed) if parsed else None


def _close(day: dt.date | None, other: dt.date | None) -> bool:
    return day is None or other is None or abs((day - other).days) <= WINDOW_DAYS


def repeats_of_rows(db: Database, dataset_id: int, first: int, last: int) -> dict[int, int]:
    """``{row_id: 1 if it repeats an earlier story else 0}`` for rows ``first``..``last``."""
    return {
        row_id: int(row_id != story)
        for row_id, story in db.execute(
            "select row_id, story_id from devmode_story_rows where dataset_id = ? and "
            "row_id between ? and ?",
            [dataset_id, first, last],
        )
    }
