"""Every bad input from the Datasets issue: refused with a clear message, the database untouched.

Each case runs the real CLI in-process against a database that already holds a dataset, and
compares the database file byte for byte before and after.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from devmode.cli import cli
from tests.conftest import file_digest

BAD = Path(__file__).parent / "bad_files"

# (case, file in bad_files/, extra CLI arguments, phrases the message must contain)
CASES = [
    ("empty file", "empty.csv", [], ["is empty (0 bytes)", "Expected a CSV"]),
    ("white space only", "whitespace_only.csv", [], ["only white space", "Expected a header row"]),
    ("header only", "header_only.csv", [], ["header row (text, label) but no data rows"]),
    ("binary garbage", "binary_garbage.csv", [], ["not a text file", "export the data"]),
    (
        "control characters",
        "control_characters.csv",
        [],
        ["does not look like text", "binary file"],
    ),
    ("UTF-16", "utf16.csv", [], ["UTF-16", "CSV UTF-8"]),
    (
        "wrong delimiter",
        "wrong_delimiter.tsv",
        ["--format", "tsv"],
        ["expected tab-separated values", "looks ','-separated", "Pick the format"],
    ),
    (
        "ragged rows",
        "ragged_rows.csv",
        [],
        ["line 4 has 3 fields, but the header has 2", "Quote text"],
    ),
    (
        "mixed encodings",
        "mixed_encoding.csv",
        [],
        ["mixes encodings", "line 3", "0xF6", "Save the file again"],
    ),
    (
        "undecodable bytes",
        "cp1252_as_utf8.csv",
        ["--encoding", "utf-8"],
        ["is not valid utf-8", "line 2", "0xF6", "pass the encoding"],
    ),
    (
        "label all blank",
        "label_all_blank.csv",
        ["--label-column", "label"],
        ["label column 'label' is blank in every row", "leave the label empty"],
    ),
    ("text all blank", "text_all_blank.csv", [], ["text column 'text' is blank in every row"]),
    (
        "mapped column missing",
        "good.csv",
        ["--label-column", "sentiment"],
        ["label column 'sentiment' is not in the data", "['text', 'label']", "--label-column"],
    ),
    (
        "name clash",
        "good.csv",
        ["--name", "EXISTING"],
        ["dataset 'existing'", "already exists", "drop it first"],
    ),
    (
        "name not valid",
        "good.csv",
        ["--name", "2019 news"],
        ["'2019 news' is not a valid dataset name", "Try"],
    ),
    (
        "SQL in name",
        "good.csv",
        ["--name", 'x"; DROP TABLE existing; --'],
        ["is not a valid dataset name"],
    ),
    (
        "reserved name",
        "good.csv",
        ["--name", "devmode_runs"],
        ["reserved for devmode's and SQLite's"],
    ),
    (
        "SQL in headers",
        "sql_in_headers.csv",
        [],
        ["column names devmode cannot store", "contains", "Rename those"],
    ),
    (
        "duplicate headers",
        "duplicate_headers.csv",
        [],
        ["columns 'text' and 'Text' are the same name"],
    ),
    ("blank header", "blank_header.csv", [], ["column 2 has no name"]),
    (
        "reserved header",
        "reserved_header.csv",
        [],
        ["starts with 'devmode_', which devmode reserves"],
    ),
    (
        "JSON object",
        "json_object.json",
        [],
        ["one JSON object, not a table", "key 'data' holds a list"],
    ),
    ("broken JSON", "json_broken.json", [], ["is not valid JSON", "line 2", "Expected an array"]),
    (
        "JSON of scalars",
        "json_scalars.json",
        [],
        ["item 1 of the array is str", "expected every item"],
    ),
    (
        "bad JSONL line",
        "jsonl_bad_line.jsonl",
        [],
        ["line 3 is not valid JSON", "one JSON object per line"],
    ),
    ("fake Parquet", "not_parquet.parquet", [], ["does not start with the Parquet magic bytes"]),
    ("bad split", "good.csv", ["--split", "0.9,0.2,0.1"], ["add up to 1", "sum 1.2"]),
]


@pytest.fixture
def stocked_db(db_path):
    result = CliRunner().invoke(
        cli, ["--db", db_path, "ingest", str(BAD / "good.csv"), "--name", "existing"]
    )
    assert result.exit_code == 0, result.output
    return db_path


@pytest.mark.parametrize("case,filename,args,phrases", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(
    stocked_db, case, filename, args, phrases
):
    before = file_digest(stocked_db)
    result = CliRunner().invoke(cli, ["--db", stocked_db, "ingest", str(BAD / filename), *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    for phrase in phrases:
        assert phrase in message
    assert file_digest(stocked_db) == before


def test_file_over_the_size_limit(stocked_db, monkeypatch):
    monkeypatch.setenv("DEVMODE_MAX_UPLOAD_MB", "0.00005")  # 52 bytes; good.csv has 81
    before = file_digest(stocked_db)
    result = CliRunner().invoke(
        cli, ["--db", stocked_db, "ingest", str(BAD / "good.csv"), "--name", "x"]
    )
    assert result.exit_code == 1
    assert "good.csv is 81 bytes; the upload limit is 52 bytes" in result.output
    assert "DEVMODE_MAX_UPLOAD_MB" in result.output
    assert file_digest(stocked_db) == before


def test_every_bad_file_has_a_case():
    covered = {c[1] for c in CASES} | {"good.csv"}
    assert {p.name for p in BAD.iterdir()} == covered


def test_the_same_files_are_accepted_when_they_are_fine(stocked_db):
    """Auto-detection reads what the explicit, wrong options refused."""
    for filename in ("wrong_delimiter.tsv", "cp1252_as_utf8.csv"):
        result = CliRunner().invoke(cli, ["--db", stocked_db, "ingest", str(BAD / filename)])
        assert result.exit_code == 0, result.output
