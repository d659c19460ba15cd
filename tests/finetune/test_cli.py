"""The fine-tune commands: train, runs, and models as the CLI shows them."""

import json
import re

from devmode.cli import cli
from tests.conftest import run_cli, tiny_rows, tiny_train_args, write_csv


def test_every_train_config_field_has_a_cli_option():
    import dataclasses

    from devmode.models.config import TrainConfig

    options = {p.name for p in cli.commands["train"].params}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {"dataset"} <= options


def test_train_runs_models_from_the_cli(db_path, tmp_path, tiny_model_dir):
    path = write_csv(
        tmp_path / "tiny.csv", [{"text": r["text"], "label": r["label"]} for r in tiny_rows(90)]
    )
    assert (
        run_cli(db_path, "ingest", path, "--name", "tiny", "--split", "0.6,0.2,0.2").exit_code == 0
    )
    args = [*tiny_train_args(tiny_model_dir), "--log-every-steps", "7"]
    result = run_cli(db_path, "train", "tiny", "--epochs", "3", *args)
    assert result.exit_code == 0, result.output
    assert "step 7/21 epoch 1 train_loss=" in result.output
    assert "Run 1 on tiny: completed" in result.output
    assert re.search(r"majority class \(\w+\)\s+accuracy 0\.333", result.output)
    assert re.search(
        r"fine-tuned \(average of epochs 2-3\)\s+accuracy (0\.[89]|1\.0)", result.output
    )
    assert re.search(
        r"Temperature \d+\.\d\d, fitted on 18 validation rows: expected calibration error on "
        r"the 18 test rows 0\.\d{3} raw, 0\.\d{3} scaled",
        result.output,
    )

    second = run_cli(db_path, "train", "tiny", "--epochs", "1", "--lora", *args)
    assert second.exit_code == 0, second.output
    listed = run_cli(db_path, "runs", "list").output
    assert "   2 completed    tiny" in listed and "   1 completed    tiny" in listed
    compared = run_cli(db_path, "runs", "compare", "1", "2").output
    assert re.search(r"epochs\s+3\s+1", compared) and re.search(r"lora\s+False\s+True", compared)
    assert re.search(r"test accuracy\s+\S+\s+\S+ \([+-]\d\.\d{3}\)", compared)
    shown = json.loads(run_cli(db_path, "runs", "show", "2", "--json").output)
    assert shown["config"]["lora"] is True and shown["status"] == "completed"

    assert "run 1" in run_cli(db_path, "models", "list").output
    assert run_cli(db_path, "models", "promote", "1", "--as", "sentiment").exit_code == 0
    assert "[active sentiment]" in run_cli(db_path, "models", "list").output
    exported = run_cli(db_path, "models", "export", "1", "--to", tmp_path)
    assert exported.exit_code == 0 and (tmp_path / "devmode-run-1.zip").exists()
    assert (
        run_cli(db_path, "models", "delete", "2", "--yes").output == "Deleted the model of run 2.\n"
    )

    refused = run_cli(db_path, "runs", "resume", "1")
    assert (
        refused.exit_code == 1
        and "only interrupted, cancelled or failed runs resume" in refused.output
    )
    assert run_cli(db_path, "runs", "cancel", "1").output == "Run 1: completed.\n"


def test_train_refuses_impossible_settings_before_starting(db_path):
    result = run_cli(db_path, "train", "nope", "--learning-rate", "2")
    assert result.exit_code == 1 and "learning_rate must be above 0 and below 1" in result.output
    result = run_cli(db_path, "train", "nope")
    assert result.exit_code == 1 and "No dataset called 'nope'" in result.output


def test_unknown_run_is_a_clean_error(db_path):
    result = run_cli(db_path, "runs", "show", "9")
    assert result.exit_code == 1
    assert (
        result.output
        == "Error: No run with id 9. List the runs with python -m devmode runs list.\n"
    )


def test_evaluations_run_show_list_compare_and_delete_from_the_cli(tiny_db, tiny_model_dir):
    options = {p.name for p in cli.commands["evaluations"].commands["run"].params}
    assert {p.name for p in cli.commands["train"].params} - {"background"} <= options

    args = [*tiny_train_args(tiny_model_dir), "--folds", "3", "--fold-seed", "5"]
    first = run_cli(tiny_db, "evaluations", "run", "tiny", "--epochs", "3", *args, "--json")
    assert first.exit_code == 0, first.output
    assert "Evaluation 1: 3 folds of tiny" in first.output  # the id, first (on stderr)
    assert "fold 3 of 3" in first.output
    record = json.loads(first.output[first.output.index("{") :])
    assert record["status"] == "completed" and len(record["fold_results"]) == 3
    second = run_cli(tiny_db, "evaluations", "run", "tiny", "--epochs", "1", *args)
    assert second.exit_code == 0, second.output
    assert re.search(r"accuracy\s+\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", second.output)
    assert "Expected calibration error of the 90 out-of-fold predictions" in second.output

    listed = run_cli(tiny_db, "evaluations", "list").output
    assert re.search(r"   2 completed\s+tiny\s+3\s+5\s+\d\.\d{3} \[", listed)
    shown = run_cli(tiny_db, "evaluations", "show", "1").output
    assert "fold 1: accuracy" in shown and "3 folds (seed 5) of 90 labelled rows" in shown

    compared = run_cli(tiny_db, "evaluations", "compare", "1", "2")
    assert compared.exit_code == 0, compared.output
    assert "Nadeau-Bengio corrected resampled t-test" in compared.output
    assert re.search(
        r"accuracy\s+\d\.\d{3}\s+\d\.\d{3}\s+difference\s+[+-]\d\.\d{3}", compared.output
    )
    assert "setting epochs: 3 -> 1" in compared.output
    as_json = json.loads(run_cli(tiny_db, "evaluations", "compare", "1", "2", "--json").output)
    assert set(as_json["metrics"]["macro_f1"]["difference"]) >= {"mean", "low", "high", "p_value"}

    deleted = run_cli(tiny_db, "evaluations", "delete", "2", "--yes")
    assert deleted.exit_code == 0 and "Deleted evaluation 2." in deleted.output
    gone = run_cli(tiny_db, "evaluations", "show", "2")
    assert gone.exit_code == 1 and "No evaluation with id 2" in gone.output
    assert "Traceback" not in gone.output


def test_evaluations_the_rows_cannot_make_exit_1_with_a_message(tiny_db):
    refused = run_cli(tiny_db, "evaluations", "run", "tiny", "--folds", "1")
    assert refused.exit_code == 1
    assert "--folds must be a whole number from 2 to 20; found 1" in refused.output
    too_many = run_cli(tiny_db, "evaluations", "run", "tiny", "--folds", "20")
    assert too_many.exit_code == 1 and "Fewer folds fit: use --folds 15" in too_many.output
    bad_seed = run_cli(tiny_db, "evaluations", "run", "tiny", "--fold-seed", "-1")
    assert bad_seed.exit_code == 2 and "--fold-seed" in bad_seed.output
    assert "Traceback" not in refused.output + too_many.output + bad_seed.output
    assert "No evaluations yet" in run_cli(tiny_db, "evaluations", "list").output
