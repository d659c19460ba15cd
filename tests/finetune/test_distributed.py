"""Data-parallel training through Accelerate: two real processes (gloo on the CPU) train one run."""

import subprocess
import sys
from pathlib import Path

import pytest

from devmode.db import open_db
from devmode.finetune.distributed import Cluster
from devmode.models import runs
from tests.conftest import store_tiny_dataset, tiny_train_args


class FakeCluster(Cluster):
    def __init__(self, rank, world_size):
        self.accelerator, self.rank, self.world_size = None, rank, world_size


def test_shards_give_every_process_the_same_number_of_steps_and_cover_every_batch():
    batches = list(range(7))
    shards = [FakeCluster(rank, 2).shard(batches) for rank in range(2)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5, 0]]  # the shorter shard repeats the first batch
    assert set(shards[0]) | set(shards[1]) == set(batches)
    assert FakeCluster(0, 1).shard(batches) == batches


def test_a_single_process_is_a_cluster_of_one():
    peers = Cluster()
    assert (peers.world_size, peers.rank, peers.is_main) == (1, 0, True)
    assert peers.any(True) and not peers.any(False) and peers.broadcast(7) == 7


def test_two_processes_train_one_run(db_path, tmp_path, tiny_model_dir):
    """Two processes under DDP, with LoRA adapters: DDP refuses a trainable parameter that
    gets no gradient, so this also proves every adapter is used."""
    store_tiny_dataset(db_path, tmp_path)
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",  # a free local port: nothing else on the machine can clash
            "--nproc_per_node",
            "2",
            "-m",
            "devmode",
            "--db",
            db_path,
            "train",
            "tiny",
            *tiny_train_args(tiny_model_dir),
            "--epochs",
            "3",
            "--early-stopping-patience",
            "0",
            "--lora",
            "--lora-rank",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run 1 on 2 processes" in result.stderr
    with open_db(db_path) as db:
        found = runs.list_runs(db)
    assert len(found) == 1  # only the main process records
    run = found[0]
    assert run.status == "completed"
    # 54 training rows, batches of 8: 7 batches, 4 steps per process per epoch
    assert (run.step, run.total_steps) == (12, 12)
    assert run.test["n"] == 18 and Path(run.model_dir).is_dir()
    assert run.config.lora
