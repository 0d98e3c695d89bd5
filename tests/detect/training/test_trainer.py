"""detect.training.trainer: the run, its run folder, resume, the non-finite guard, early stopping, schedules.

Tiny runs: synthetic RSNA at 128 px, MobileNetV3-FPN at 64 px, 2 steps per epoch, on the CPU.
"""

from __future__ import annotations

import csv
import math
import shutil

import pytest
import torch
import yaml

from data_prep.errors import CheckpointError, ConfigError
from data_prep.manifest import read_manifest
from detect.models.checkpoint import load_checkpoint
from detect.predictions import OperatingPoint
from detect.training import engine as engine_module
from detect.training import trainer as train_module
from detect.training.engine import TrainingDivergedError, ValidationResult
from detect.training.run_folder import RunFolderExistsError
from detect.training.trainer import run_training
from tests.detect.train_fixtures import make_kermany, make_rsna, tiny_config

SILENT = lambda _line: None  # noqa: E731


@pytest.fixture(scope="module")
def rsna_dir(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"))


@pytest.fixture(scope="module")
def straight_run(rsna_dir, tmp_path_factory):
    """Two epochs without interruption: the reference for the output and resume tests."""
    out = tmp_path_factory.mktemp("straight") / "run"
    lines: list[str] = []
    result = run_training(tiny_config(), [rsna_dir], out_dir=out, log=lines.append)
    return result, lines


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- a whole run


def test_run_writes_config_metrics_and_checkpoints(straight_run):
    result, lines = straight_run
    run_dir = result.run_dir
    assert (run_dir / "config.yaml").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["max_steps_per_epoch"] == 2
    assert result.best_checkpoint == run_dir / "checkpoints" / "best.pt" and result.best_checkpoint.is_file()
    assert result.last_checkpoint == run_dir / "checkpoints" / "last.pt" and result.last_checkpoint.is_file()
    assert result.epochs_run == 2 and result.global_step == 4 and not result.stopped_early
    assert result.images_per_second > 0

    rows = _csv_rows(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [r["global_step"] for r in rows] == ["2", "4"]
    for column in (
        "lr",
        "train_loss",
        "train_loss_classifier",
        "train_loss_box_reg",
        "train_loss_objectness",
        "train_loss_rpn_box_reg",
        "train_loss_image_classifier",
        "val_map50",
        "val_map",
        "val_rsna_score",
        "val_f1",
        "val_roc_auc",
        "val_threshold_rsna",
        "epoch_time_s",
        "train_images_per_s",
    ):
        assert column in rows[0], column
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    # the loss columns add up: train_loss is the sum of the components
    components = [k for k in rows[0] if k.startswith("train_loss_")]
    assert float(rows[0]["train_loss"]) == pytest.approx(sum(float(rows[0][k]) for k in components), rel=1e-4)

    last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == 2 and last["global_step"] == 4
    point = OperatingPoint.from_dict(last["extra"]["operating_points"]["rsna"])
    assert 0.0 <= point.threshold <= 1.0 and point.source.startswith("F1-optimal on rsna val at epoch 2 (")
    assert last["metrics"]["val_threshold_rsna"] == pytest.approx(point.threshold)
    assert set(last["metrics"]) >= {"val_map50", "val_rsna_score", "val_f1"}
    assert last["scheduler"]["last_epoch"] == 4
    best = load_checkpoint(result.best_checkpoint)
    assert best["epoch"] == result.best_epoch or result.best_epoch == 0
    assert lines[-1].startswith("epoch 2/2 loss ")


def test_tensorboard_events_are_written_when_installed(straight_run):
    pytest.importorskip("tensorboard")
    result, _ = straight_run
    assert list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_rerunning_into_a_finished_run_is_refused(straight_run, rsna_dir):
    result, _ = straight_run
    with pytest.raises(RunFolderExistsError, match=r"already holds a run \(last\.pt\); pass --resume"):
        run_training(tiny_config(), [rsna_dir], out_dir=result.run_dir, log=SILENT)


# --------------------------------------------------------------------------------- resume


def test_resume_continues_exactly_where_it_stopped(straight_run, rsna_dir, tmp_path, monkeypatch):
    reference, _ = straight_run
    out = tmp_path / "run"
    real_epoch = train_module.train_one_epoch

    def crash_in_second_epoch(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt  # the machine went away during epoch 2
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config(), [rsna_dir], out_dir=out, log=SILENT)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)

    lines: list[str] = []
    resumed = run_training(tiny_config(), [], out_dir=out, resume=True, log=lines.append)  # data from the run
    assert lines[0].startswith(f"resuming {out} after epoch 1 (step 2")
    assert resumed.epochs_run == 1 and resumed.global_step == reference.global_step == 4

    a, b = load_checkpoint(reference.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(b["optimizer"]["param_groups"][0]["lr"])
    for name, tensor in a["model"].items():  # CPU, no workers: the same batches, the same weights
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    for key, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(
            b["optimizer"]["state"][key]["momentum_buffer"], state["momentum_buffer"], rtol=1e-5, atol=1e-6
        )
    assert [r["epoch"] for r in _csv_rows(out / "metrics.csv")] == ["1", "2"]


def test_resume_may_add_epochs(straight_run, rsna_dir, tmp_path):
    reference, _ = straight_run
    out = tmp_path / "run"
    shutil.copytree(reference.run_dir, out)
    more = run_training(tiny_config("train.epochs=3"), [rsna_dir], out_dir=out, resume=True, log=SILENT)
    assert more.epochs_run == 1 and more.global_step == 6
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 3
    assert [r["epoch"] for r in _csv_rows(out / "metrics.csv")] == ["1", "2", "3"]


def test_resume_with_a_different_config_names_the_keys(straight_run, rsna_dir):
    result, _ = straight_run
    changed = tiny_config("train.lr=0.02", "data.image_size_px=96", "train.epochs=1")
    with pytest.raises(ConfigError) as excinfo:
        run_training(changed, [rsna_dir], out_dir=result.run_dir, resume=True, log=SILENT)
    message = str(excinfo.value)
    assert "data.image_size_px (64 -> 96)" in message and "train.lr (0.01 -> 0.02)" in message
    assert "train.epochs (2 -> 1)" in message  # epochs may grow, never shrink


def test_resume_without_a_checkpoint(rsna_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"last\.pt: checkpoint not found"):
        run_training(tiny_config(), [rsna_dir], out_dir=tmp_path / "nothing", resume=True, log=SILENT)


# ------------------------------------------------------------------------------ config


def test_unknown_yaml_key_is_named(tmp_path, rsna_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\ntrain:\n  lrr: 0.1\n")
    with pytest.raises(
        ConfigError,
        match=r"recipe\.yaml: unknown config key 'train\.lrr' \(did you mean 'train\.lr'\?\); valid keys in train: amp, ",
    ):
        run_training(recipe, [rsna_dir], out_dir=tmp_path / "run", log=SILENT)


def test_bad_override_is_named(tmp_path, rsna_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"config key 'train\.batch_size' must be an integer, got 'four'"):
        run_training(recipe, [rsna_dir], out_dir=tmp_path / "run", overrides=["train.batch_size=four"], log=SILENT)


def test_missing_data_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"--data .*nowhere: folder not found"):
        run_training(tiny_config(), [tmp_path / "nowhere"], out_dir=tmp_path / "run", log=SILENT)
    with pytest.raises(ConfigError, match=r"no dataset given: pass --data DIR"):
        run_training(tiny_config(), [], out_dir=tmp_path / "run", log=SILENT)


# ------------------------------------------------------------------- guard, early stop


def _patch_training_losses(monkeypatch, change) -> None:
    """Every model the run builds passes its training losses through `change(losses)`."""
    real_build = train_module.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        real_forward = model.forward

        def forward(images, targets=None):
            out = real_forward(images, targets)
            return change(out) if model.training else out

        model.forward = forward
        return model

    monkeypatch.setattr(train_module, "build_model", build)


def test_non_finite_loss_stops_training_with_the_step_and_components(rsna_dir, tmp_path, monkeypatch):
    _patch_training_losses(monkeypatch, lambda out: {**out, "loss_box_reg": out["loss_box_reg"] * float("nan")})
    with pytest.raises(TrainingDivergedError) as excinfo:
        run_training(tiny_config(), [rsna_dir], out_dir=tmp_path / "run", log=SILENT)
    message = str(excinfo.value)
    assert message.startswith("non-finite loss at step 1 (epoch 1): ")
    assert "loss_box_reg=nan" in message and "loss_classifier=" in message
    assert "lower train.lr (now 1e-05)" in message  # warm-up starts at 0.001 x 0.01
    assert "\n" not in message


class _NanGradient(torch.autograd.Function):
    """Identity forward, nan backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_non_finite_gradient_stops_training_before_it_reaches_the_weights(rsna_dir, tmp_path, monkeypatch):
    _patch_training_losses(
        monkeypatch, lambda out: {**out, "loss_image_classifier": _NanGradient.apply(out["loss_image_classifier"])}
    )
    with pytest.raises(
        TrainingDivergedError,
        match=r"^non-finite gradient at step 1 \(epoch 1\) with finite losses "
        r"loss_box_reg=.*; lower train\.lr \(now 1e-05\)",
    ):
        run_training(tiny_config(), [rsna_dir], out_dir=tmp_path / "run", log=SILENT)


def test_early_stopping_stops_after_patience_evaluations_without_improvement(rsna_dir, tmp_path, monkeypatch):
    scores = iter([0.3, 0.5, 0.4, 0.9, 0.9])

    def fake_evaluate(model, loader, device, **kwargs):
        return ValidationResult(
            metrics={"map50": next(scores), "f1": 0.5},
            operating_points={"rsna": OperatingPoint("rsna", 0.4, "fake")},
            records=[],
            predictions=[],
        )

    monkeypatch.setattr(engine_module, "evaluate", fake_evaluate)  # what validate() calls
    cfg = tiny_config("train.epochs=5", "train.max_steps_per_epoch=1", "train.early_stop_patience=1")
    lines: list[str] = []
    result = run_training(cfg, [rsna_dir], out_dir=tmp_path / "run", log=lines.append)
    assert result.stopped_early and result.epochs_run == 3 and result.global_step == 3
    assert result.best_epoch == 2 and result.best_metrics["val_map50"] == pytest.approx(0.5)
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 2
    assert load_checkpoint(result.best_checkpoint)["extra"]["operating_points"]["rsna"]["threshold"] == pytest.approx(
        0.4
    )
    assert load_checkpoint(result.last_checkpoint)["epoch"] == 3
    assert [r["val_map50"] for r in _csv_rows(result.run_dir / "metrics.csv")] == ["0.3", "0.5", "0.4"]
    assert lines[-1] == "early stop: val_map50 has not improved for 1 evaluations (best 0.5000 at epoch 2)"
    assert train_module.format_result(result).startswith("best epoch 2: val_map50=0.5000 val_f1=0.5000 | 3 epochs, ")


# ------------------------------------------------------------------------ data choices


@pytest.fixture(scope="module")
def kermany_dir(tmp_path_factory):
    return make_kermany(tmp_path_factory.mktemp("kermany"))


def test_rsna_and_kermany_train_together(rsna_dir, kermany_dir, tmp_path):
    cfg = tiny_config("train.epochs=1", "data.kermany_weight=2.0")
    result = run_training(cfg, [rsna_dir, kermany_dir], out_dir=tmp_path / "run", log=SILENT)
    assert result.global_step == 2
    metrics = load_checkpoint(result.last_checkpoint)["metrics"]
    n_val = metrics["val_n_images"]
    expected = sum(len(read_manifest(d).split_records("val")) for d in (rsna_dir, kermany_dir))
    assert n_val == expected
    # one operating point per dataset, each chosen on its own val images
    points = load_checkpoint(result.last_checkpoint)["extra"]["operating_points"]
    assert set(points) == {"rsna", "kermany"}
    assert "kermany val" in points["kermany"]["source"] and "rsna val" in points["rsna"]["source"]


def test_monitoring_map_on_kermany_only_is_a_config_error(kermany_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"'train\.monitor' is 'val_map50' but the val split has no box-labelled"):
        run_training(tiny_config(), [kermany_dir], out_dir=tmp_path / "run", log=SILENT)


# --------------------------------------------------------------------------- unreadable files


def test_unreadable_files_are_skipped_recorded_and_training_goes_on(tmp_path):
    """A file that fails when training decodes it (corrupt JPEG data passes
    the header scan; a file removed after prepare) is skipped, listed in RUN_DIR/bad_files.csv
    with its reason, and the epoch goes on."""
    from tests.data_prep.dicom_fixtures import overwrite_middle

    data = make_rsna(tmp_path / "rsna", n_images=10)
    prepared = read_manifest(data)
    train_record = next(r for r in prepared.records if r.split == "train")
    val_record = next(r for r in prepared.records if r.split == "val")
    overwrite_middle(prepared.image_path(train_record))
    prepared.image_path(val_record).unlink()
    lines: list[str] = []
    cfg = tiny_config("train.epochs=1", "train.max_steps_per_epoch=0", "data.balance_classes=false")
    result = run_training(cfg, [data], out_dir=tmp_path / "run", log=lines.append)
    assert result.epochs_run == 1 and result.global_step > 0
    rows = _csv_rows(result.run_dir / "bad_files.csv")
    reasons = {row["path"]: row["reason"] for row in rows}
    assert set(reasons) == {str(prepared.image_path(train_record)), str(prepared.image_path(val_record))}
    assert "corrupt or undecodable JPEG data" in reasons[str(prepared.image_path(train_record))]
    assert "cannot open" in reasons[str(prepared.image_path(val_record))]
    assert sum(line.startswith("warning: skipped unreadable ") for line in lines) == 2

    resumed = run_training(None, [], out_dir=tmp_path / "run", resume=True, overrides=["train.epochs=2"], log=SILENT)
    assert resumed.epochs_run == 1
    assert len(_csv_rows(result.run_dir / "bad_files.csv")) == 2  # kept on resume, each file once


# ------------------------------------------------------------------------ time budget


class _FakeClock:
    """time.monotonic advancing 50 s per call: the trainer reads it at an epoch's start, at the
    budget check after the training steps, and after validation."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def monotonic(self) -> float:
        self.now_s += 50.0
        return self.now_s


def test_max_minutes_stops_at_the_end_of_the_epoch_it_runs_out_in_and_resume_keeps_the_count(
    rsna_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(train_module, "time", _FakeClock())
    cfg = tiny_config(
        "train.epochs=5", "train.max_steps_per_epoch=1", "train.max_minutes=1", "train.eval_every_epochs=5"
    )
    lines: list[str] = []
    result = run_training(cfg, [rsna_dir], out_dir=tmp_path / "run", log=lines.append)
    # epoch 1: 50 s at the check (< 60), 100 s in all; epoch 2: 100 + 50 s at the check -> stop after it
    assert result.stopped_on_time and result.epochs_run == 2 and result.global_step == 2
    assert result.train_seconds == pytest.approx(200.0)
    assert "time budget: train.max_minutes=1 ran out during epoch 2; stopping after it" in lines
    last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == 2 and last["extra"]["train_seconds"] == pytest.approx(200.0)
    assert "val_f1" in last["metrics"]  # the epoch the time ran out in is validated, whatever eval_every_epochs says

    again = run_training(cfg, [rsna_dir], out_dir=tmp_path / "run", resume=True, log=SILENT)
    assert again.stopped_on_time and again.epochs_run == 0 and again.global_step == 2

    more = tiny_config(
        "train.epochs=5", "train.max_steps_per_epoch=1", "train.max_minutes=4", "train.eval_every_epochs=5"
    )
    longer = run_training(more, [rsna_dir], out_dir=tmp_path / "run", resume=True, log=SILENT)
    # 200 s spent; epoch 3 checks at 250 s (< 240? no: 250 >= 240) -> stops after epoch 3
    assert longer.stopped_on_time and longer.epochs_run == 1 and longer.global_step == 3
