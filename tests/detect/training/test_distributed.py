"""DDP: two real gloo processes on the CPU train together; rank 0 alone writes.

`test_two_processes_keep_identical_parameters` spawns two workers that call run_training as
torchrun would set them up (RANK, WORLD_SIZE, MASTER_ADDR/PORT); `test_torchrun_cli` runs the
documented command line `torchrun --nproc_per_node=2 cli.py train ...` end to end.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from data_prep.errors import ConfigError
from detect.distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_object,
    dist_info_from_env,
    wrap_model,
)
from detect.models.checkpoint import load_checkpoint
from tests.detect.train_fixtures import TINY_OVERRIDES, make_rsna, tiny_config_dict

REPO_ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------- single process


def test_without_torchrun_variables_it_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = dist_info_from_env()
    assert info == DistInfo(rank=0, world_size=1, local_rank=0)
    assert info.is_main and not info.is_distributed


def test_torchrun_variables_are_read(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info_from_env()
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.is_distributed) == (3, 4, 1, False, True)


@pytest.mark.parametrize(
    "rank, world, message",
    [
        ("2", "2", r"RANK=2 and WORLD_SIZE=2 are inconsistent"),
        ("x", "2", r"environment variable RANK='x' must be an integer"),
    ],
)
def test_inconsistent_torchrun_variables(monkeypatch, rank, world, message):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ConfigError, match=message):
        dist_info_from_env()


def test_helpers_are_no_ops_in_one_process():
    values = torch.tensor([1.0, 2.0])
    assert all_reduce_mean(values) is values
    assert broadcast_object({"a": 1}) == {"a": 1}
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, torch.device("cpu"), DistInfo()) is model


# --------------------------------------------------------------------- two processes


@pytest.fixture(scope="module")
def rsna_dir(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"), n_images=20)


def _ddp_worker(
    rank: int, world_size: int, port: int, cfg_dict: dict, data_dir: str, out_dir: str, params_dir: str
) -> None:
    """One torchrun-like process: environment as torchrun sets it, then the ordinary entry point."""
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    from detect.config import config_from_dict
    from detect.training.trainer import run_training

    result = run_training(config_from_dict(cfg_dict), [data_dir], out_dir=out_dir, log=lambda _line: None)
    assert result.rank == rank
    torch.save(
        {name: p.detach().clone() for name, p in result.model.named_parameters()}, Path(params_dir) / f"rank{rank}.pt"
    )


def test_two_processes_keep_identical_parameters(rsna_dir, tmp_path):
    out = tmp_path / "run"
    params_dir = tmp_path / "params"
    params_dir.mkdir()
    cfg_dict = tiny_config_dict("train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=2")
    mp.spawn(
        _ddp_worker, args=(2, _free_port(), cfg_dict, str(rsna_dir), str(out), str(params_dir)), nprocs=2, join=True
    )

    rank0 = torch.load(params_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(params_dir / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["global_step"] == 2
    assert (out / "checkpoints" / "best.pt").is_file()
    for name, tensor in rank0.items():
        assert torch.equal(checkpoint["model"][name], tensor), name
    # the model really trained: the weights moved away from the seeded initialisation
    from detect.config import config_from_dict
    from detect.models.build import build_model

    torch.manual_seed(config_from_dict(cfg_dict).seed)
    initial = build_model(config_from_dict(cfg_dict).model, 64).state_dict()
    assert any(not torch.equal(initial[name], tensor) for name, tensor in rank0.items())
    with open(out / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]  # written once, by rank 0


def test_two_processes_train_a_classifier_through_the_phase_switch(rsna_dir, tmp_path):
    """A classifier under DDP with two-phase transfer: DDP is wrapped again when the backbone
    unfreezes (its reducer knows only the parameters that needed gradients when built)."""
    out = tmp_path / "run"
    params_dir = tmp_path / "params"
    params_dir.mkdir()
    cfg_dict = tiny_config_dict(
        "model.name=basic_cnn",
        "model.trainable_backbone_layers=5",
        "task=rsna2",
        "train.monitor=val_roc_auc",
        "train.epochs=2",
        "train.freeze_backbone_epochs=1",
        "train.max_steps_per_epoch=2",
        "train.batch_size=2",
    )
    mp.spawn(
        _ddp_worker, args=(2, _free_port(), cfg_dict, str(rsna_dir), str(out), str(params_dir)), nprocs=2, join=True
    )
    rank0 = torch.load(params_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(params_dir / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    from detect.config import config_from_dict
    from detect.models.build import build_model

    cfg = config_from_dict(cfg_dict)
    torch.manual_seed(cfg.seed)
    initial = build_model(cfg.model, 64, task=cfg.task).state_dict()
    # the backbone moved too: phase 2 trained every layer, in step on both ranks
    assert not torch.equal(initial["network.features.0.0.weight"], rank0["network.features.0.0.weight"])
    assert load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 4


def test_torchrun_cli(rsna_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed next to this python")
    out = tmp_path / "run"
    settings = [*TINY_OVERRIDES, "train.epochs=1", "train.max_steps_per_epoch=1", "train.batch_size=2"]
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "cli.py",
        "train",
        "--config",
        "configs/demo.yaml",
        "--data",
        str(rsna_dir),
        "--out",
        str(out),
    ]
    for setting in settings:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final_lines = [
        line for line in proc.stdout.splitlines() if line.startswith("best epoch") or line.startswith("no finite")
    ]
    assert len(final_lines) == 1, proc.stdout  # rank 0 alone prints
    assert "x 2 processes" in proc.stdout
    assert load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 1
