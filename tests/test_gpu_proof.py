"""benchmarks/gpu_proof.sh and its carry folder: the GPU proof must not rot between GPU runs.

The dry run is the whole script on the CPU with tiny slices (no packing, no wheels, no
torch.compile); the packer's parts that need no network are tested on their own.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import pack_for_device  # noqa: E402


@pytest.fixture
def long_tiny_model(tiny_model_dir, tmp_path):
    """The tiny test model with room for 512 positions (the benchmarks read up to 128 tokens):
    the dry run checks the script, not the figures, so it need not train MiniLM eight times."""
    import shutil

    from transformers import BertConfig, BertModel

    path = tmp_path / "tiny-512"
    shutil.copytree(tiny_model_dir, path)
    config = BertConfig.from_pretrained(path)
    config.max_position_embeddings = 512
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).save_pretrained(path)
    return path


def test_the_dry_run_measures_every_side_and_writes_the_table(tmp_path, long_tiny_model):
    out = tmp_path / "proof"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_proof.sh"), "--dry-run", str(out)],
        env={**os.environ, "PYTHON": sys.executable, "DEVMODE_DRY_RUN_MODEL": str(long_tiny_model)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    train = json.loads((out / "train.json").read_text())["results"]
    sides = {"trainer", "trainer-grouped", "devmode", "devmode-graphs"}
    assert {(r["dataset"], r["side"]) for r in train} == {
        (d, s) for d in ("allagree", "topic") for s in sides
    }
    assert all(r["samples_per_s"] > 0 and 0 <= r["accuracy"] <= 1 for r in train)
    score = json.loads((out / "score.json").read_text())
    assert score["texts"] == 64
    sides = [r["side"] for r in score["results"]]
    assert sides[0].endswith("its best)") and sides[1:3] == ["pipeline (batch 256)", "devmode fp32"]
    assert sides[3].startswith("devmode auto: ")  # the dry run is on a CPU
    assert all(r["same_label_as_fp32"] > 0.9 for r in score["results"])
    assert all(r["vs_best_pipeline"] > 0 for r in score["results"])
    table = (out / "table.txt").read_text()
    for label in (
        "Trainer, length-grouped",
        "devmode --cuda-graphs / the faster Trainer",
        "Scoring",
    ):
        assert label in table
    assert done.stdout.rstrip().endswith(table.rstrip().splitlines()[-1])  # the table comes last
    assert (out / "train.log").stat().st_size and (out / "machine.txt").stat().st_size


def test_without_a_carry_folder_the_real_run_says_what_to_do(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    script = repo / "benchmarks" / "gpu_proof.sh"
    script.write_text((ROOT / "benchmarks" / "gpu_proof.sh").read_text())
    done = subprocess.run(
        ["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "Run benchmarks/pack_for_device.py first" in done.stderr


def test_the_carried_model_loads_as_fp32_weights_for_training(tmp_path):
    from devmode.models.classifier import load_encoder

    pack_for_device.save_model(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    assert weights.stat().st_size < 50 * 2**20  # fp16: half of the fp32 file's 90 MB
    encoder, tokenizer = load_encoder(str(tmp_path / "model"))
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}
    assert tokenizer("Profit rose.")["input_ids"][0] == tokenizer.cls_token_id


def test_wheels_are_what_the_device_lacks_with_their_requirements():
    wanted = pack_for_device.missing_on_device({"sqlite-utils"})
    assert {"sqlite-utils", "sqlite-fts4", "click-default-group"} <= set(wanted)
    assert not {"click", "tabulate", "pluggy", "python-dateutil"} & set(wanted)  # on the device
    found = pack_for_device.imported_distributions(("sqlite_utils",))
    assert "sqlite-utils" in found and "devmode" not in found


def test_an_oversized_carry_folder_is_refused_and_removed(tmp_path):
    folder = tmp_path / "carry"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "big.whl").write_bytes(b"x" * 3000)
    assert pack_for_device.check_size(folder, limit=4000) == 3000
    with pytest.raises(pack_for_device.TooBig, match=r"wheels/big.whl.*Removed it"):
        pack_for_device.check_size(folder, limit=2000)
    assert not folder.exists()
