"""Suggested label corrections: stored, decided by a person, with the old labels kept."""

import csv
import json

import numpy as np
import pytest

from devmode.data import examples, ingest, readers, splits
from devmode.db import open_db
from devmode.labels import corrections
from devmode.models import runs
from devmode.models.config import TrainConfig
from tests.conftest import PHRASEBANK_ALLAGREE, label_history, run_cli, write_csv


@pytest.fixture
def labelled(db_path, tmp_path):
    """24 labelled rows and two open suggestions (made by hand: no model needed)."""
    rows = [
        {"text": f"sentence {i}", "label": label, "other": label}
        for i, label in enumerate(["positive", "negative", "neutral"] * 8)
    ]
    upload = readers.read_upload(write_csv(tmp_path / "six.csv", rows))
    with open_db(db_path) as db:
        mapping, split = ingest.ColumnMapping("text", "label"), splits.SplitSpec(0.5, 0.25, 0.25)
        ingest.insert_upload(db, upload, "six", mapping, split)
        dataset = ingest.get_dataset(db, "six")
        for rank, (row_id, suggested) in enumerate([(1, "negative"), (2, "neutral")], start=1):
            db[corrections.SUGGESTIONS].insert(
                {
                    "dataset_id": dataset.id,
                    "row_id": row_id,
                    "label_column": "label",
                    "given": "positive" if row_id == 1 else "negative",
                    "suggested": suggested,
                    "confidence": 0.9,
                    "given_probability": 0.05,
                    "rank": rank,
                    "mode": "quick",
                    "status": "open",
                    "reviewed_at": "2026-11-30T00:00:00",
                }
            )
    return db_path


def _labels(db, name="six"):
    return [label for _, _, label in examples.labelled_rows(db, name)]


def test_accepting_relabels_keeps_the_old_label_and_raises_the_version(labelled):
    with open_db(labelled) as db:
        first, second = (s["id"] for s in corrections.open_suggestions(db, "six"))
        assert corrections.decide(db, "six", accept=[first], reject=[second]) == 1
        assert _labels(db)[:2] == ["negative", "negative"]  # row 1 changed, row 2 kept
        assert ingest.get_dataset(db, "six").label_version == 1
        (change,) = label_history(db, "six")
        assert (change["row_id"], change["old_label"], change["new_label"]) == (
            1,
            "positive",
            "negative",
        )
        assert change["suggestion_id"] == first and change["label_version"] == 1
        assert corrections.open_suggestions(db, "six") == []
        # a run queued now records which labels it trains on; the file's hash is unchanged
        run_ = runs.create_run(db, "six", TrainConfig())
        assert run_.label_version == 1
        assert run_.dataset_sha256 == ingest.get_dataset(db, "six").sha256


def test_a_run_trains_on_the_labels_of_when_it_starts_and_is_not_resumed_on_others(labelled):
    from devmode.finetune import worker

    with open_db(labelled) as db:
        queued = runs.create_run(db, "six", TrainConfig())
        first, second = (s["id"] for s in corrections.open_suggestions(db, "six"))
        corrections.decide(db, "six", accept=[first])
        worker.pin_label_version(db, queued, resuming=False)  # queued before, starts now
        started = runs.get_run(db, queued.id)
        assert (queued.label_version, started.label_version) == (0, 1)
        corrections.decide(db, "six", accept=[second])
        with pytest.raises(worker.DatasetChanged, match="label version 1 to 2"):
            worker.pin_label_version(db, started, resuming=True)
        assert runs.get_run(db, queued.id).label_version == 1


def test_a_later_decision_on_the_same_row_wins_and_both_are_in_the_history(labelled):
    with open_db(labelled) as db:
        first, _ = (s["id"] for s in corrections.open_suggestions(db, "six"))
        corrections.decide(db, "six", accept=[first])
        dataset = ingest.get_dataset(db, "six")
        later = (
            db[corrections.SUGGESTIONS]
            .insert(
                {
                    "dataset_id": dataset.id,
                    "row_id": 1,
                    "label_column": "label",
                    "given": "negative",
                    "suggested": "neutral",
                    "rank": 1,
                    "status": "open",
                    "reviewed_at": "2026-11-30T01:00:00",
                }
            )
            .last_pk
        )
        assert corrections.decide(db, "six", accept=[later]) == 2
        assert _labels(db)[0] == "neutral"
        history = label_history(db, "six", row_id=1)
        assert [(h["old_label"], h["new_label"]) for h in history] == [
            ("positive", "negative"),
            ("negative", "neutral"),
        ]


@pytest.mark.parametrize(
    "accept, reject, expected",
    [
        ([99], [], "has the id 99"),
        ([1, 98, 99], [], "ids 98, 99"),
        ([1], [1], "both accepted and rejected"),
    ],
)
def test_unknown_or_contradictory_ids_change_nothing(labelled, accept, reject, expected):
    with open_db(labelled) as db:
        before = _labels(db)
        with pytest.raises(corrections.NoSuchSuggestion, match=expected):
            corrections.decide(db, "six", accept=accept, reject=reject)
        assert _labels(db) == before
        assert len(corrections.open_suggestions(db, "six")) == 2
        assert label_history(db, "six") == []
        assert ingest.get_dataset(db, "six").label_version == 0


def test_suggestions_about_another_label_column_are_not_shown_or_applied(labelled):
    with open_db(labelled) as db:
        first = corrections.open_suggestions(db, "six")[0]["id"]
        ingest.set_mapping(db, "six", ingest.ColumnMapping("text", "other"))
        assert corrections.open_suggestions(db, "six") == []
        with pytest.raises(corrections.NoSuchSuggestion):
            corrections.decide(db, "six", accept=[first])


def test_review_labels_from_the_cli_finds_flips_and_applies_decisions(db_path, tmp_path):
    """The real embedded model on 400 PhraseBank sentences with 20 labels flipped."""
    with open(PHRASEBANK_ALLAGREE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[::5][:400]
    names = sorted({r["label"] for r in rows})
    rng = np.random.default_rng(1)
    flipped = set(rng.choice(len(rows), size=20, replace=False).tolist())
    for i in flipped:
        rows[i]["label"] = rng.choice([n for n in names if n != rows[i]["label"]])
    assert (
        run_cli(db_path, "ingest", write_csv(tmp_path / "pb.csv", rows), "--name", "pb").exit_code
        == 0
    )

    result = run_cli(db_path, "review-labels", "pb", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("[") :])
    assert found and [s["rank"] for s in found] == list(range(1, len(found) + 1))
    hits = [s for s in found if s["row_id"] - 1 in flipped]
    assert len(hits) >= 14 and all(s["suggested"] != s["label"] for s in found)

    ids = [str(s["id"]) for s in hits[:3]]
    result = run_cli(db_path, "review-labels", "pb", "--accept", *ids, ids[0], ids[0])
    assert result.exit_code == 0 and "label version 1" in result.output
    assert "Accepted 3 suggestions" in result.output  # an id given three times is decided once
    result = run_cli(db_path, "review-labels", "pb", "--reject", str(found[-1]["id"]))
    assert result.exit_code == 0 and "label version 1" in result.output
    listed = run_cli(db_path, "review-labels", "pb", "--open")
    assert listed.exit_code == 0 and str(hits[0]["id"]) not in listed.output.split()
    with open_db(db_path) as db:
        history = label_history(db, "pb")
        assert [h["new_label"] for h in history] == [s["suggested"] for s in hits[:3]]
        assert [h["old_label"] for h in history] == [s["label"] for s in hits[:3]]

    again = run_cli(db_path, "review-labels", "pb", "--accept", *ids)
    assert again.exit_code == 1 and "nothing was changed" in again.output
    many = run_cli(
        db_path, "review-labels", "pb", "--reject", *map(str, range(10**6, 10**6 + 100_000))
    )
    assert many.exit_code == 1 and "(and 99,990 more)" in many.output
    assert len(many.output) < 1000  # it printed 689 KB of ids
    usage = run_cli(db_path, "review-labels", "pb", "3")
    assert usage.exit_code == 2 and "--accept or --reject" in usage.output


def test_a_dataset_with_one_class_cannot_be_reviewed(db_path, tmp_path):
    rows = [{"text": f"t {i}", "label": "positive"} for i in range(10)]
    assert (
        run_cli(db_path, "ingest", write_csv(tmp_path / "one.csv", rows), "--name", "one").exit_code
        == 0
    )
    result = run_cli(db_path, "review-labels", "one")
    assert result.exit_code == 1 and "at least two classes" in result.output
    assert "Traceback" not in result.output
