"""Every bad input from the Datasets issue: refused with a clear message, the database untouched.

Each case runs the real CLI in-process against a database that already holds a dataset, and
compares the database file byte for byte before and after.
"""

import pytest
from click.testing import CliRunner

from devmode.cli import cli
from tests.conftest import ROOT, file_digest

BAD = ROOT / "tests" / "bad_files"

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
    (
        "more columns than SQLite allows",
        "too_many_columns.csv",
        [],
        ["has 2,002 columns; a dataset can have at most 1,999", "Keep the columns you need"],
    ),
    (
        "a NUL byte in a text (in the head)",
        "nul_in_text.csv",
        [],
        ["contains NUL bytes, so it is not a text file"],
    ),
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


def test_a_nul_byte_after_the_first_megabyte_is_refused_too(stocked_db, tmp_path):
    """The binary check reads the head of the file; a NUL further down was stored before."""
    path = tmp_path / "late_nul.csv"
    rows = [f"row {i} about rates and bonds,neutral" for i in range(40_000)]
    rows.append("profit \x00 rose,positive")
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > 1_100_000
    before = file_digest(stocked_db)
    result = CliRunner().invoke(cli, ["--db", stocked_db, "ingest", str(path)])
    assert result.exit_code == 1 and "row 40,001 (text) holds a NUL character" in result.output
    assert file_digest(stocked_db) == before


def test_blank_lines_before_the_header_are_skipped(stocked_db, tmp_path):
    """The header used to be stored as a data row (a fake class 'label')."""
    path = tmp_path / "blank_first.csv"
    path.write_text("\n\n  \ntext,label\nprofit rose,positive\nshares fell,negative\n")
    result = CliRunner().invoke(cli, ["--db", stocked_db, "ingest", str(path), "--name", "b"])
    assert result.exit_code == 0, result.output
    assert "labels:  negative 1, positive 1" in result.output
    assert "Stored 2 rows" in result.output


def test_nested_parquet_columns_keep_their_names_and_values(stocked_db, tmp_path):
    """List, struct and map columns were named by their leaf ('element'), so a mapped list
    column became the text 'element'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from devmode.data import ingest
    from devmode.db import open_db

    table = pa.table(
        {
            "text": ["profit rose", "shares fell"],
            "tags": [["earnings", "q1"], ["markets"]],
            "meta": [{"source": "wire", "score": 1}, {"source": "blog", "score": 2}],
            "extra": pa.array([[("k", 1)], [("k", 2)]], type=pa.map_(pa.string(), pa.int64())),
            "label": ["positive", "negative"],
        }
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path)
    result = CliRunner().invoke(
        cli, ["--db", stocked_db, "ingest", str(path), "--name", "nested", "--text-column", "tags"]
    )
    assert result.exit_code == 0, result.output
    with open_db(stocked_db) as db:
        assert ingest.get_dataset(db, "nested").columns == [
            "text",
            "tags",
            "meta",
            "extra",
            "label",
        ]
        rows = list(db["nested"].rows)
    assert rows[0]["tags"] == '["earnings", "q1"]' and '"source": "wire"' in rows[0]["meta"]
