import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from devmode.cli import cli
from tests.conftest import HEADLINES, PHRASEBANK_ALLAGREE, write_csv

README = Path(__file__).resolve().parents[1] / "README.md"


def run(db_path, *args, input=None):
    result = CliRunner().invoke(cli, ["--db", db_path, *map(str, args)], input=input)
    return result


def all_commands(group=cli, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, path)
        else:
            yield " ".join(path), command


COMMANDS = dict(all_commands())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    assert COMMANDS[name].help, f"{name} has no help text"
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_readme_with_an_example(name):
    assert re.search(rf"python -m devmode (--db \S+ )?{re.escape(name)}\b", README.read_text()), (
        f"README.md has no example of `python -m devmode {name}`"
    )


def test_ingest_show_map_split_rename_drop(db_path):
    result = run(db_path, "ingest", PHRASEBANK_ALLAGREE, "--name", "phrasebank", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "Stored 2,259 rows as dataset 'phrasebank'." in result.output
    assert "negative 303, neutral 1,386, positive 570" in result.output

    listed = json.loads(run(db_path, "datasets", "list", "--json").output)
    assert [(d["name"], d["rows"], d["split"]) for d in listed] == [
        ("phrasebank", 2259, {"fractions": [0.8, 0.1, 0.1], "seed": 7})
    ]
    table = run(db_path, "datasets", "list").output
    assert "phrasebank" in table and "2,259" in table

    shown = run(db_path, "datasets", "show", "phrasebank", "--rows", "2").output
    assert "train 1,807 / validation 226 / test 226" in shown
    assert len([line for line in shown.splitlines() if line.startswith("{")]) == 2

    resplit = run(
        db_path, "datasets", "split", "phrasebank", "--split", "0.6,0.2,0.2", "--seed", "1"
    )
    assert resplit.exit_code == 0 and "fractions 0.6/0.2/0.2, seed 1" in resplit.output

    remapped = run(db_path, "datasets", "map", "phrasebank", "--no-label")
    assert remapped.exit_code == 0 and "roles:   text=text\n" in remapped.output

    assert run(db_path, "datasets", "rename", "phrasebank", "pb").exit_code == 0
    refused = run(db_path, "datasets", "drop", "pb", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert run(db_path, "datasets", "drop", "pb", "--yes").output == "Dropped dataset 'pb'.\n"
    assert "No datasets yet" in run(db_path, "datasets", "list").output


def test_ingest_unlabelled_headlines_with_explicit_roles(db_path):
    result = run(
        db_path, "ingest", HEADLINES, "--name", "news", "--no-label", "--date-column", "timestamp"
    )
    assert result.exit_code == 0, result.output
    assert "roles:   text=text, date=timestamp, ticker=ticker" in result.output


def test_ingest_hugging_face_id_from_a_local_folder(db_path, tmp_path, topic_rows):
    folder = tmp_path / "topics"
    folder.mkdir()
    write_csv(folder / "train.csv", topic_rows)
    result = run(db_path, "ingest", f"hf:{folder}", "--hf-split", "train")
    assert result.exit_code == 0, result.output
    assert "Stored 60 rows as dataset 'topics'." in result.output
    assert f"from hf:{folder}[train]" in result.output


def test_unknown_dataset_is_a_clean_error(db_path):
    result = run(db_path, "datasets", "show", "nope")
    assert result.exit_code == 1
    assert result.output.startswith("Error: No dataset called 'nope'. There are no datasets yet.")


def test_db_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("DEVMODE_DB", str(path))
    result = CliRunner().invoke(cli, ["datasets", "list"])
    assert result.exit_code == 0 and path.exists()


def test_python_dash_m_runs_the_cli(db_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "devmode", "--db", db_path, "datasets", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No datasets yet" in out.stdout
