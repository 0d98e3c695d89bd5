"""detect.models.checkpoint: atomic save, strict load with one-line errors, round trip, latest-run lookup."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import pytest
import torch

from data_prep.errors import CheckpointError, OutputWriteError
from detect.config import config_to_dict
from detect.models.build import build_model
from detect.models.checkpoint import (
    build_model_from_checkpoint,
    find_latest_best_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from detect.predictions import OperatingPoint
from detect.training.seeding import capture_rng_states
from tests.data_prep.fs_fixtures import fill_disk, small_filesystem
from tests.detect.train_fixtures import tiny_config


@pytest.fixture(scope="module")
def tiny_model_and_cfg():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px)
    return model, cfg


def _save(path, model, cfg, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    defaults = dict(
        model=model,
        cfg=cfg,
        epoch=3,
        global_step=42,
        optimizer=optimizer,
        best_metric=0.25,
        best_epoch=2,
        metrics={"val_map50": 0.25},
        extra={"operating_points": {"rsna": OperatingPoint("rsna", 0.37, "F1-optimal on rsna val").to_dict()}},
        rng_states=capture_rng_states(),
    )
    defaults.update(kwargs)
    return save_checkpoint(path, **defaults)


def test_round_trip_gives_identical_weights_and_identical_predictions(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    path = _save(tmp_path / "run" / "checkpoints" / "best.pt", model, cfg)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left behind

    payload = load_checkpoint(path)
    assert payload["epoch"] == 3 and payload["global_step"] == 42 and payload["best_epoch"] == 2
    assert payload["best_metric"] == pytest.approx(0.25)
    assert payload["config"] == config_to_dict(cfg)
    assert set(payload["versions"]) == {"torch", "torchvision", "detect", "python"}
    assert payload["versions"]["torch"] == torch.__version__
    assert payload["optimizer"]["param_groups"][0]["lr"] == 0.1

    rebuilt, rebuilt_cfg, extra = build_model_from_checkpoint(path, "cpu")
    assert rebuilt_cfg == cfg
    assert extra["operating_points"]["rsna"]["threshold"] == pytest.approx(0.37) and extra["epoch"] == 3
    original = model.state_dict()
    for name, tensor in rebuilt.state_dict().items():
        assert torch.equal(tensor, original[name]), name

    model.eval()
    image = torch.rand(3, cfg.data.image_size_px, cfg.data.image_size_px, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model([image])[0], rebuilt([image])[0]
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_rebuilding_never_fetches_the_configured_pretrained_weights(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    # A run trained from ImageNet weights: rebuilding must not try to download them again.
    online_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights="imagenet"))
    path = _save(tmp_path / "best.pt", model, online_cfg)
    rebuilt, rebuilt_cfg, _ = build_model_from_checkpoint(path)
    assert rebuilt_cfg.model.weights == "imagenet"
    assert not rebuilt.training


def test_save_replaces_an_existing_checkpoint(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    path = tmp_path / "last.pt"
    _save(path, model, cfg, epoch=1)
    _save(path, model, cfg, epoch=2)
    assert load_checkpoint(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, tiny_model_and_cfg):
    """torch.save's RuntimeError becomes a one-line error, and no temporary file stays behind."""
    _, cfg = tiny_model_and_cfg
    model = torch.nn.Linear(512, 512)  # a 1 MB checkpoint: the tiny detector's is 76 MB
    with small_filesystem(tmp_path / "full", size_kib=4096) as full:
        path = _save(full / "last.pt", model, cfg, epoch=1)
        fill_disk(full)
        with pytest.raises(OutputWriteError) as excinfo:
            _save(path, model, cfg, epoch=2)
        assert str(excinfo.value) == f"{path}: cannot write (No space left on device)"
        assert load_checkpoint(path)["epoch"] == 1
        assert sorted(p.name for p in full.iterdir()) == ["fill", "last.pt"]


def test_any_torch_save_failure_is_one_line_and_leaves_no_debris(tmp_path, tiny_model_and_cfg, monkeypatch):
    model, cfg = tiny_model_and_cfg
    path = _save(tmp_path / "last.pt", model, cfg, epoch=1)

    def fails_midway(payload, handle):
        handle.write(b"PK\x03\x04" + bytes(100_000))
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", fails_midway)
    with pytest.raises(OutputWriteError) as excinfo:
        _save(path, model, cfg, epoch=2)
    assert str(excinfo.value) == f"{path}: cannot write (unexpected pos 576 vs 534)"
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_file_holding_python_objects_is_refused_without_weights_only_advice(tmp_path, tiny_model_and_cfg):
    """The message does not quote PyTorch's advice to load with weights_only=False."""
    model, cfg = tiny_model_and_cfg
    path = tmp_path / "foreign.pt"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    assert str(excinfo.value) == (
        f"{path}: holds Python objects (argparse.Namespace) that a weights-only load refuses: not a checkpoint file "
        "written by detect or torchvision, or one from an untrusted source; detect never loads such objects"
    )


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty or cut short"),
        (b"\x00garbage" * 50, "not PyTorch tensor data"),
    ],
)
def test_unreadable_checkpoint_reasons_are_one_line_without_advice(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    assert str(excinfo.value) == f"{path}: not a readable checkpoint file ({reason})"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint not found$"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: not a readable checkpoint file (")
    assert "\n" not in message


def test_truncated_checkpoint(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    path = _save(tmp_path / "last.pt", model, cfg)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    assert str(excinfo.value) == (
        f"{path}: not a readable checkpoint file (PytorchStreamReader failed reading zip "
        "archive: failed finding central directory)"
    )


def test_a_plain_state_dict_is_not_a_training_checkpoint(tmp_path, tiny_model_and_cfg):
    model, _ = tiny_model_and_cfg
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(
        CheckpointError,
        match=r"weights\.pth: not a detect training checkpoint \(missing format_version, "
        r"model, config, epoch, global_step\)",
    ):
        load_checkpoint(path)


def test_weights_of_another_architecture_are_refused(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    path = _save(tmp_path / "best.pt", model, cfg)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["head_hidden_dim"] = 48  # the stored head is 32 wide
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"best\.pt: weights do not fit model 'mobilenet_v3_large_fpn'"):
        build_model_from_checkpoint(path)


def test_find_latest_best_checkpoint_takes_the_newest_run(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    old = _save(tmp_path / "runs" / "old" / "checkpoints" / "best.pt", model, cfg)
    new = _save(tmp_path / "runs" / "new" / "checkpoints" / "best.pt", model, cfg)
    _save(tmp_path / "runs" / "newest_but_no_best" / "checkpoints" / "last.pt", model, cfg)
    now = time.time()
    os.utime(old, (now, now))
    os.utime(new, (now - 100, now - 100))
    assert find_latest_best_checkpoint(tmp_path / "runs") == old


@pytest.mark.parametrize("make_dir", [False, True])
def test_find_latest_best_checkpoint_without_runs(tmp_path, monkeypatch, make_dir):
    monkeypatch.chdir(tmp_path)
    if make_dir:
        (tmp_path / "runs" / "empty_run").mkdir(parents=True)
    with pytest.raises(CheckpointError) as excinfo:
        find_latest_best_checkpoint()
    assert (
        str(excinfo.value) == "no trained model found under runs/; train one with `detect train` or pass --checkpoint"
    )


def test_nan_best_metric_is_stored(tmp_path, tiny_model_and_cfg):
    model, cfg = tiny_model_and_cfg
    path = _save(tmp_path / "last.pt", model, cfg, best_metric=math.nan, best_epoch=0)
    assert math.isnan(load_checkpoint(path)["best_metric"])
