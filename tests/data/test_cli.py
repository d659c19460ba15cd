"""The datasets commands: ingest, show, map, split, rename, drop."""

import json

from tests.conftest import HEADLINES, PHRASEBANK_ALLAGREE, run_cli, write_csv


def test_ingest_show_map_split_rename_drop(db_path):
    result = run_cli(db_path, "ingest", PHRASEBANK_ALLAGREE, "--name", "phrasebank", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "Stored 2,259 rows as dataset 'phrasebank'." in result.output
    assert "negative 303, neutral 1,386, positive 570" in result.output

    listed = json.loads(run_cli(db_path, "datasets", "list", "--json").output)
    assert [(d["name"], d["rows"], d["split"]) for d in listed] == [
        ("phrasebank", 2259, {"fractions": [0.8, 0.1, 0.1], "seed": 7})
    ]
    table = run_cli(db_path, "datasets", "list").output
    assert "phrasebank" in table and "2,259" in table

    shown = run_cli(db_path, "datasets", "show", "phrasebank", "--rows", "2").output
    assert "train 1,807 / validation 226 / test 226" in shown
    assert len([line for line in shown.splitlines() if line.startswith("{")]) == 2

    resplit = run_cli(
        db_path, "datasets", "split", "phrasebank", "--split", "0.6,0.2,0.2", "--seed", "1"
    )
    assert resplit.exit_code == 0 and "fractions 0.6/0.2/0.2, seed 1" in resplit.output

    remapped = run_cli(db_path, "datasets", "map", "phrasebank", "--no-label")
    assert remapped.exit_code == 0 and "roles:   text=text\n" in remapped.output

    assert run_cli(db_path, "datasets", "rename", "phrasebank", "pb").exit_code == 0
    refused = run_cli(db_path, "datasets", "drop", "pb", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert run_cli(db_path, "datasets", "drop", "pb", "--yes").output == "Dropped dataset 'pb'.\n"
    assert "No datasets yet" in run_cli(db_path, "datasets", "list").output


def test_ingest_unlabelled_headlines_with_explicit_roles(db_path):
    result = run_cli(
        db_path, "ingest", HEADLINES, "--name", "news", "--no-label", "--date-column", "timestamp"
    )
    assert result.exit_code == 0, result.output
    assert "roles:   text=text, date=timestamp, ticker=ticker" in result.output


def test_ingest_hugging_face_id_from_a_local_folder(db_path, tmp_path, topic_rows):
    folder = tmp_path / "topics"
    folder.mkdir()
    write_csv(folder / "train.csv", topic_rows)
    result = run_cli(db_path, "ingest", f"hf:{folder}", "--hf-split", "train")
    assert result.exit_code == 0, result.output
    assert "Stored 60 rows as dataset 'topics'." in result.output
    assert f"from hf:{folder}[train]" in result.output


def test_unknown_dataset_is_a_clean_error(db_path):
    result = run_cli(db_path, "datasets", "show", "nope")
    assert result.exit_code == 1
    assert result.output.startswith("Error: No dataset called 'nope'. There are no datasets yet.")
