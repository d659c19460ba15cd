import tracemalloc

import pytest

from devmode.data import ingest, suggestions
from devmode.data.ingest import ColumnMapping
from devmode.data.readers import InvalidUpload, read_upload
from devmode.data.splits import SplitSpec
from devmode.db import open_db
from tests.conftest import HEADLINES, PHRASEBANK_ALLAGREE, TOPIC_TRAIN, file_digest, write_csv


def store(db, path, name, mapping=None, split=None, **kwargs):
    upload = read_upload(path)
    mapping = mapping or suggestions.suggest_mapping(upload.columns, upload.preview(200))
    return ingest.insert_upload(db, upload, name, mapping, split, **kwargs)


@pytest.mark.parametrize(
    "path,expected",
    [
        (PHRASEBANK_ALLAGREE, ColumnMapping(text="text", label="label")),
        (TOPIC_TRAIN, ColumnMapping(text="text", label="label")),
        (HEADLINES, ColumnMapping(text="text", date="date", ticker="ticker")),
    ],
    ids=["phrasebank", "topics", "headlines"],
)
def test_suggested_mapping_on_the_shared_datasets(path, expected):
    upload = read_upload(path)
    assert suggestions.suggest_mapping(upload.columns, upload.preview(200)) == expected


def test_suggested_mapping_from_values_when_names_say_nothing():
    rows = [
        {
            "c1": f"2020-01-{i % 28 + 1:02d}",
            "c2": f"A long enough sentence about markets number {i}",
            "c3": ["up", "down", "flat"][i % 3],
        }
        for i in range(30)
    ]
    assert suggestions.suggest_mapping(["c1", "c2", "c3"], rows) == ColumnMapping(
        text="c2", label="c3", date="c1"
    )


@pytest.mark.parametrize(
    "filename,name",
    [
        ("Sentences AllAgree.csv", "sentences_allagree"),
        ("2020-news.jsonl", "data_2020_news"),
        ("devmode_runs.csv", "data_devmode_runs"),
        ("__.csv", "dataset"),
    ],
)
def test_suggest_name_gives_a_valid_name(filename, name, db):
    assert ingest.suggest_name(filename) == name
    ingest.validate_name(db, name)


def test_full_phrasebank_is_stored_with_a_stratified_split(db):
    dataset = store(db, PHRASEBANK_ALLAGREE, "phrasebank")
    stats = ingest.dataset_stats(db, "phrasebank")
    assert dataset.row_count == stats.rows == 2259
    assert dataset.columns == ["text", "label"]
    assert dataset.split == SplitSpec(0.8, 0.1, 0.1, 42)
    assert stats.split_counts == {"train": 1807, "validation": 226, "test": 226}
    per_label = {(c["label"], c["split"]): c["count"] for c in stats.label_counts}
    # the published class counts (negative 303, neutral 1386, positive 570), split 80/10/10 per class
    assert per_label == {
        ("negative", "train"): 243,
        ("negative", "validation"): 30,
        ("negative", "test"): 30,
        ("neutral", "train"): 1108,
        ("neutral", "validation"): 139,
        ("neutral", "test"): 139,
        ("positive", "train"): 456,
        ("positive", "validation"): 57,
        ("positive", "test"): 57,
    }
    assert (stats.empty_texts, stats.duplicate_texts, stats.blank_labels) == (0, 0, 0)


def test_split_is_reproducible_and_seed_dependent(tmp_path):
    def test_texts(seed, db_name):
        with open_db(tmp_path / db_name) as db:
            store(db, PHRASEBANK_ALLAGREE, "pb", split=SplitSpec(seed=seed))
            return [r["text"] for r in ingest.iter_rows(db, "pb", split="test", columns=["text"])]

    first = test_texts(42, "a.db")
    assert first == test_texts(42, "b.db")
    other = test_texts(7, "c.db")
    assert len(other) == len(first) and set(other) != set(first)


def test_resplit_changes_fractions_and_seed(db):
    store(db, PHRASEBANK_ALLAGREE, "pb")
    before = {r["text"] for r in ingest.iter_rows(db, "pb", split="test")}
    dataset = ingest.resplit(db, "pb", SplitSpec(0.7, 0.1, 0.2, seed=1))
    stats = ingest.dataset_stats(db, "pb")
    assert dataset.split == SplitSpec(0.7, 0.1, 0.2, 1)
    assert stats.split_counts == {"train": 1581, "validation": 226, "test": 452}
    assert {r["text"] for r in ingest.iter_rows(db, "pb", split="test")} != before


def test_unlabelled_data_is_split_at_random_and_rows_with_blank_labels_are_left_out(db, tmp_path):
    path = write_csv(
        tmp_path / "mixed.csv",
        [
            {"text": f"headline {i}", "label": "" if i % 5 == 0 else ["up", "down"][i % 2]}
            for i in range(100)
        ],
    )
    store(db, path, "mixed", ColumnMapping(text="text", label="label"))
    stats = ingest.dataset_stats(db, "mixed")
    assert stats.blank_labels == 20
    assert sum(stats.split_counts.values()) == 80
    ingest.set_mapping(db, "mixed", ColumnMapping(text="text"))
    assert sum(ingest.dataset_stats(db, "mixed").split_counts.values()) == 100


def test_stats_count_empty_and_duplicate_texts(db, tmp_path):
    path = write_csv(
        tmp_path / "d.csv",
        [
            {"text": "same", "label": "a"},
            {"text": "same", "label": "b"},
            {"text": "", "label": "a"},
            {"text": "  ", "label": "b"},
            {"text": "other", "label": "a"},
        ],
    )
    store(db, path, "d", ColumnMapping(text="text", label="label"))
    stats = ingest.dataset_stats(db, "d")
    assert (stats.rows, stats.empty_texts, stats.duplicate_texts) == (5, 2, 1)


def test_set_mapping_validates_and_keeps_data_on_error(db):
    store(db, HEADLINES, "news")
    with pytest.raises(ingest.InvalidMapping, match="'sentiment' is not in the data"):
        ingest.set_mapping(db, "news", ColumnMapping(text="text", label="sentiment"))
    with pytest.raises(ingest.InvalidMapping, match="mapped to two roles"):
        ingest.set_mapping(db, "news", ColumnMapping(text="text", label="text"))
    dataset = ingest.set_mapping(
        db, "news", ColumnMapping(text="text", label="source", date="date")
    )
    assert dataset.mapping == ColumnMapping(text="text", label="source", date="date")
    assert ingest.dataset_stats(db, "news").label_counts[0]["label"] == "Benzinga"


def test_rename_and_drop(db):
    store(db, PHRASEBANK_ALLAGREE, "pb")
    store(db, HEADLINES, "news")
    with pytest.raises(ingest.DatasetExists):
        ingest.rename_dataset(db, "pb", "NEWS")
    assert ingest.rename_dataset(db, "pb", "PB").name == "PB"  # a change of case is allowed
    renamed = ingest.rename_dataset(db, "pb", "phrasebank")
    assert (
        renamed.row_count == 2259
        and "phrasebank" in db.table_names()
        and "PB" not in db.table_names()
    )
    ingest.drop_dataset(db, "phrasebank")
    assert [d.name for d in ingest.list_datasets(db)] == ["news"]
    assert "phrasebank" not in db.table_names()
    with pytest.raises(ingest.NoSuchDataset, match="Datasets are: news"):
        ingest.get_dataset(db, "phrasebank")


def test_a_bad_row_after_many_batches_leaves_the_database_as_it_was(db_path, tmp_path):
    rows = [{"text": f"headline {i}", "label": "x"} for i in range(20_000)]
    path = write_csv(tmp_path / "late.csv", rows)
    with open(path, "a") as f:
        f.write("one,two,three\n")
    with open_db(db_path) as db:
        store(db, PHRASEBANK_ALLAGREE, "pb")
    before = file_digest(db_path)
    progress = []
    with open_db(db_path) as db, pytest.raises(InvalidUpload, match="line 20002 has 3 fields"):
        store(db, path, "late", batch_size=1000, on_progress=lambda n, f: progress.append(n))
    assert progress[-1] == 20_000  # every batch was written before the bad line was met
    assert file_digest(db_path) == before


def test_ingest_streams_with_bounded_memory(db, tmp_path):
    """Peak memory grows with the batch, not the file: 4x the rows, about the same peak."""

    def peak(n_rows, name):
        path = write_csv(
            tmp_path / f"{name}.csv",
            [
                {
                    "text": f"Company {i} reports quarterly results above expectations",
                    "label": "positive",
                }
                for i in range(n_rows)
            ],
        )
        upload = read_upload(path)
        tracemalloc.start()
        ingest.insert_upload(
            db, upload, name, ColumnMapping(text="text", label="label"), batch_size=2000
        )
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak_bytes

    small, large = peak(10_000, "small"), peak(40_000, "large")
    assert large < 1.5 * small
