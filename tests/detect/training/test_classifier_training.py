"""Classifiers through the one training loop: a run, its metrics, resume, the two-phase transfer
schedule (frozen backbone, then everything at lr * factor, across --resume), the loss choice,
task filtering of the data, and `detect infer` / `detect eval` on the checkpoint.

Tiny runs: synthetic Kermany / RSNA, a classifier at 64 px, 2 steps per epoch, on the CPU.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from data_prep.errors import ConfigError
from detect.models.checkpoint import build_model_from_checkpoint, load_checkpoint
from detect.models.classifiers import ImageClassifier
from detect.outputs.boxes_json import validate_output
from detect.training import trainer as train_module
from detect.training.trainer import run_training
from tests.detect.train_fixtures import make_kermany, make_rsna, tiny_config

SILENT = lambda _line: None  # noqa: E731
CLASSIFIER = ("model.name=resnet18", "model.trainable_backbone_layers=5", "task=kermany3", "train.monitor=val_macro_f1")
TWO_PHASE = (
    *CLASSIFIER,
    "train.epochs=3",
    "train.freeze_backbone_epochs=1",
    "train.finetune_lr_factor=0.1",
    "train.schedule=constant",
    "train.warmup_steps=0",
)


def classifier_config(*overrides: str):
    return tiny_config(*CLASSIFIER, *overrides)


@pytest.fixture(scope="module")
def kermany_dir(tmp_path_factory):
    return make_kermany(tmp_path_factory.mktemp("kermany"))


@pytest.fixture(scope="module")
def rsna_dir(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"))


@pytest.fixture(scope="module")
def classifier_run(kermany_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    lines: list[str] = []
    result = run_training(classifier_config(), [kermany_dir], out_dir=out, log=lines.append)
    return result, lines


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_classifier_trains_through_the_loop_and_reports_classification_metrics(classifier_run):
    result, lines = classifier_run
    assert result.epochs_run == 2 and result.global_step == 4 and isinstance(result.model, ImageClassifier)
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for column in (
        "train_loss",
        "train_loss_image_classifier",
        "val_f1",
        "val_roc_auc",
        "val_macro_f1",
        "val_accuracy",
        "val_threshold_kermany",
    ):
        assert column in rows[0], column
    assert not any(k.startswith(("val_map", "val_rsna_score")) for k in rows[0])  # no boxes: not 0, absent
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    assert "val_macro_f1" in lines[-1] or any("val_macro_f1" in line for line in lines)
    last = load_checkpoint(result.last_checkpoint)
    assert last["config"]["task"] == "kermany3"
    model, cfg, extra = build_model_from_checkpoint(result.best_checkpoint)
    assert isinstance(model, ImageClassifier) and cfg.task == "kermany3"
    assert 0.0 <= extra["operating_points"]["kermany"]["threshold"] <= 1.0


def test_detect_infer_runs_a_classifier_checkpoint(classifier_run, kermany_dir, tmp_path):
    from cli import app

    result, _ = classifier_run
    out = tmp_path / "boxes.json"
    infer = CliRunner().invoke(
        app,
        [
            "infer",
            str(kermany_dir / "chest_xray" / "test"),
            "--checkpoint",
            str(result.best_checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert infer.exit_code == 0, infer.output
    document = json.loads(out.read_text())
    validate_output(document)
    assert document["model"]["task"] == "kermany3"  # what the probabilities mean: no boxes by design, not none found
    assert document["images"] and all(image["boxes"] == [] for image in document["images"])
    assert all(0.0 <= image["pneumonia_probability"] <= 1.0 for image in document["images"])


def test_detect_eval_reports_classification_metrics_and_no_box_metrics(classifier_run, kermany_dir, tmp_path):
    from cli import app

    result, _ = classifier_run
    evaluation = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(result.best_checkpoint),
            "--data",
            str(kermany_dir),
            "--out",
            str(tmp_path / "eval"),
            "--device",
            "cpu",
            "--split",
            "val",
        ],
    )
    assert evaluation.exit_code == 0, evaluation.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["kermany"]) == {"pneumonia", "bacterial_viral", "kermany_3class"}
    assert metrics["kermany"]["kermany_3class"]["class_names"] == ["normal", "bacterial", "viral"]
    assert "detection" not in metrics  # Kermany has no boxes: no detection section, for any model
    assert "Kermany 3-class macro F1" in evaluation.stdout


def test_detect_eval_of_an_rsna_classifier_says_box_metrics_do_not_apply(rsna_dir, kermany_dir, tmp_path):
    from cli import app

    result = run_training(
        tiny_config(
            "model.name=basic_cnn",
            "model.trainable_backbone_layers=5",
            "task=rsna3",
            "train.monitor=val_macro_f1",
            "train.epochs=1",
        ),
        [rsna_dir],
        out_dir=tmp_path / "run",
        log=SILENT,
    )
    evaluation = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(result.best_checkpoint),
            "--data",
            str(rsna_dir),
            "--out",
            str(tmp_path / "eval"),
            "--device",
            "cpu",
        ],
    )
    assert evaluation.exit_code == 0, evaluation.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["detection"] == "not applicable: the model is a classifier (task rsna3) and draws no boxes"
    assert set(metrics["classification"]) == {"pneumonia", "rsna_3class"}
    assert not (tmp_path / "eval" / "test_predictions.csv").exists()
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "mAP and the RSNA score: not applicable" in report
    assert "not applicable" in evaluation.stdout and "mAP@.5 " not in evaluation.stdout

    other = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(result.best_checkpoint),
            "--data",
            str(kermany_dir),
            "--out",
            str(tmp_path / "eval2"),
            "--device",
            "cpu",
        ],
    )
    assert other.exit_code == 2
    assert (
        f"--data {kermany_dir}: a kermany dataset, but the checkpoint is a rsna3 classifier, which reads rsna "
        "images only"
    ) in other.stderr


def test_resume_continues_a_classifier_run_exactly(classifier_run, kermany_dir, tmp_path, monkeypatch):
    reference, _ = classifier_run
    out = tmp_path / "run"
    real_epoch = train_module.train_one_epoch

    def crash_in_second_epoch(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(classifier_config(), [kermany_dir], out_dir=out, log=SILENT)
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)
    resumed = run_training(classifier_config(), [], out_dir=out, resume=True, log=SILENT)
    assert resumed.global_step == reference.global_step == 4
    a, b = load_checkpoint(reference.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


# ------------------------------------------------------------------------- two-phase transfer


class EpochSpy:
    """Wraps train_one_epoch: records, per epoch, what trains, the lr, and the weights before / after."""

    def __init__(self, real):
        self.real = real
        self.epochs: dict[int, dict] = {}

    def __call__(self, model, loader, optimizer, *args, **kwargs):
        inner = getattr(model, "module", model)
        before = {n: p.detach().clone() for n, p in inner.named_parameters()}
        trainable = {n for n, p in inner.named_parameters() if p.requires_grad}
        lrs = [group["lr"] for group in optimizer.param_groups]
        stats = self.real(model, loader, optimizer, *args, **kwargs)
        changed = {n for n, p in inner.named_parameters() if not torch.equal(p.detach(), before[n])}
        self.epochs[kwargs["epoch"]] = {
            "trainable": trainable,
            "changed": changed,
            "lrs": lrs,
            "all": set(before),
            "bn_training": inner.network.bn1.training,
        }
        return stats


def test_two_phase_schedule_freezes_then_fine_tunes_at_a_lower_lr(kermany_dir, tmp_path, monkeypatch):
    spy = EpochSpy(train_module.train_one_epoch)
    monkeypatch.setattr(train_module, "train_one_epoch", spy)
    lines: list[str] = []
    run_training(classifier_config(*TWO_PHASE), [kermany_dir], out_dir=tmp_path / "run", log=lines.append)
    head = {"network.fc.weight", "network.fc.bias"}
    first, second, third = spy.epochs[0], spy.epochs[1], spy.epochs[2]
    assert first["trainable"] == head and first["changed"] == head  # the backbone stays exactly as it was
    assert first["lrs"] == pytest.approx([0.01, 0.01])
    assert not first["bn_training"]  # frozen BatchNorm statistics too
    assert second["trainable"] == second["all"] and second["changed"] == second["all"]
    assert second["lrs"] == pytest.approx([0.001, 0.001])  # lr x finetune_lr_factor
    assert third["lrs"] == pytest.approx([0.001, 0.001])
    assert any(line.startswith("epoch 2: the backbone unfreezes") for line in lines)


def test_two_phase_survives_resume_across_the_phase_boundary(kermany_dir, tmp_path, monkeypatch):
    straight = run_training(classifier_config(*TWO_PHASE), [kermany_dir], out_dir=tmp_path / "straight", log=SILENT)
    out = tmp_path / "run"
    real_epoch = train_module.train_one_epoch

    def crash_at_phase_two(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt  # killed after the frozen epoch, before the first fine-tuning one
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", crash_at_phase_two)
    with pytest.raises(KeyboardInterrupt):
        run_training(classifier_config(*TWO_PHASE), [kermany_dir], out_dir=out, log=SILENT)
    spy = EpochSpy(real_epoch)
    monkeypatch.setattr(train_module, "train_one_epoch", spy)
    resumed = run_training(classifier_config(*TWO_PHASE), [], out_dir=out, resume=True, log=SILENT)
    assert sorted(spy.epochs) == [1, 2]
    assert spy.epochs[1]["trainable"] == spy.epochs[1]["all"]
    assert spy.epochs[1]["lrs"] == pytest.approx([0.001, 0.001])  # scaled once, not twice, not never
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert [g["lr"] for g in b["optimizer"]["param_groups"]] == pytest.approx(
        [g["lr"] for g in a["optimizer"]["param_groups"]]
    )
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)

    # resumed after the boundary: the checkpoint's scaled lr is kept, never scaled again
    more = EpochSpy(real_epoch)
    monkeypatch.setattr(train_module, "train_one_epoch", more)
    run_training(classifier_config(*TWO_PHASE, "train.epochs=4"), [], out_dir=out, resume=True, log=SILENT)
    assert (
        more.epochs[3]["lrs"] == pytest.approx([0.001, 0.001]) and more.epochs[3]["trainable"] == more.epochs[3]["all"]
    )


# ------------------------------------------------------------------------------- data, losses


def test_weighted_ce_is_set_from_the_train_split(kermany_dir, tmp_path, monkeypatch):
    seen = {}
    real_epoch = train_module.train_one_epoch

    def spy(model, *args, **kwargs):
        seen["loss"] = getattr(model, "module", model).loss
        return real_epoch(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", spy)
    result = run_training(
        classifier_config("train.loss=weighted_ce", "train.epochs=1"),
        [kermany_dir],
        out_dir=tmp_path / "run",
        log=SILENT,
    )
    from data_prep.manifest import read_manifest
    from data_prep.tasks import class_counts
    from detect.models.losses import inverse_frequency_weights

    train = [r for r in read_manifest(kermany_dir).records if r.split == "train"]
    assert seen["loss"].kind == "weighted_ce"
    assert seen["loss"].class_weights == pytest.approx(inverse_frequency_weights(class_counts(train, "kermany3")))
    assert result.epochs_run == 1


def test_a_data_folder_without_records_for_the_task_is_one_line(rsna_dir, tmp_path):
    with pytest.raises(ConfigError) as info:
        run_training(classifier_config(), [rsna_dir], out_dir=tmp_path / "run", log=SILENT)
    message = str(info.value)
    assert f"--data {rsna_dir}" in message and "no KERMANY images for task 'kermany3'" in message
    assert "\n" not in message


def test_an_rsna_task_trains_on_rsna_with_focal_loss(rsna_dir, tmp_path):
    result = run_training(
        tiny_config(
            "model.name=basic_cnn",
            "model.trainable_backbone_layers=5",
            "task=rsna2",
            "train.monitor=val_roc_auc",
            "train.loss=focal",
            "train.epochs=1",
        ),
        [rsna_dir],
        out_dir=tmp_path / "run",
        log=SILENT,
    )
    rows = _csv_rows(result.run_dir / "metrics.csv")
    assert "val_threshold_rsna" in rows[0] and "val_threshold_kermany" not in rows[0]
    assert "val_macro_f1" not in rows[0]  # a binary task
    assert math.isfinite(float(rows[0]["train_loss_image_classifier"]))
