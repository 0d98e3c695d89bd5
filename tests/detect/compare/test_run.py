"""detect compare end to end on tiny runs: outputs, a killed run resumes, a finished one is skipped."""

from __future__ import annotations

import csv

import pytest

from detect.compare import run as compare_run
from detect.compare.plan import plan_compare
from detect.config import config_from_dict, config_to_dict
from detect.models.checkpoint import load_checkpoint
from detect.training.trainer import run_training
from tests.detect.train_fixtures import make_kermany, tiny_config

MODELS = ["mobilenet_v3_large_fpn", "resnet18_fpn"]
SILENT = lambda _line: None  # noqa: E731


def _recipe():
    return tiny_config(
        "model.trainable_backbone_layers=5", "train.monitor=val_f1", "train.max_steps_per_epoch=1", "train.epochs=2"
    )


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A comparison whose first model was killed after epoch 1 of 2 (a last.pt, no marker)."""
    root = tmp_path_factory.mktemp("compare")
    data = make_kermany(root / "kermany", n_images=24)
    out = root / "out"
    first = plan_compare(MODELS, _recipe(), out).models[0]
    half = config_from_dict(config_to_dict(first.config), ["train.epochs=1"])
    run_training(half, [data], out_dir=first.run_dir, log=SILENT)
    lines: list[str] = []
    outcome = compare_run.run_compare(MODELS, _recipe(), [data], out, n_resamples=20, log=lines.append)
    return data, out, outcome, lines


def test_writes_the_table_the_report_and_the_plots(compared):
    _data, out, outcome, _lines = compared
    for name in ("compare.csv", "report.md", "roc.png", "confusion.png", "accuracy_vs_time.png"):
        assert (out / name).is_file(), name
    with open(out / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == MODELS
    for row in rows:
        assert (
            int(row["parameters"]) > 1_000_000 and int(row["n_test_images"]) == outcome.results[0].predictions.n_images
        )
        assert float(row["infer_ms_per_image"]) > 0 and row["thresholds"].startswith("kermany=")
        low, value, high = (float(row[k]) for k in ("accuracy_low", "accuracy", "accuracy_high"))
        assert low <= value <= high
    report = (out / "report.md").read_text()
    assert "| mobilenet_v3_large_fpn | detector |" in report and "![ROC curves of all models](roc.png)" in report
    assert (out / "runs" / MODELS[1] / "compare_result.json").is_file()


def test_a_killed_model_resumes_instead_of_restarting(compared):
    _data, out, outcome, lines = compared
    assert f"[{MODELS[0]}] resuming in {out / 'runs' / MODELS[0]}" in lines
    assert any(line.startswith(f"[{MODELS[0]}] resuming {out / 'runs' / MODELS[0]} after epoch 1") for line in lines)
    assert f"[{MODELS[1]}] training in {out / 'runs' / MODELS[1]}" in lines
    last = load_checkpoint(out / "runs" / MODELS[0] / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and last["global_step"] == 2  # one step per epoch: epoch 1 kept, epoch 2 added
    assert [r.epochs_run for r in outcome.results] == [2, 2] and outcome.trained == MODELS


def test_finished_models_are_not_trained_again(compared, monkeypatch):
    data, out, first, _lines = compared
    before = (out / "compare.csv").read_text()

    def refuse(*_args, **_kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(compare_run, "run_training", refuse)
    monkeypatch.setattr(compare_run, "load_predictor", refuse)
    lines: list[str] = []
    again = compare_run.run_compare(MODELS, _recipe(), [data], out, n_resamples=20, log=lines.append)
    assert again.trained == [] and lines[0].startswith(f"[{MODELS[0]}] finished already")
    assert (out / "compare.csv").read_text() == before
    assert again.best_model == first.best_model


def test_classifiers_and_detectors_compare_on_three_classes(compared, tmp_path):
    data, _out, _outcome, _lines = compared
    recipe = tiny_config(
        "model.name=resnet18",
        "model.trainable_backbone_layers=5",
        "task=kermany3",
        "train.monitor=val_f1",
        "train.max_steps_per_epoch=1",
        "train.epochs=1",
    )
    outcome = compare_run.run_compare(
        ["basic_cnn", "mobilenet_v3_large_fpn"], recipe, [data], tmp_path / "out", n_resamples=20, log=SILENT
    )
    with open(tmp_path / "out" / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["kind"], r["task"]) for r in rows] == [
        ("basic_cnn", "classifier", "kermany3"),
        ("mobilenet_v3_large_fpn", "detector", "detection"),
    ]
    for row in rows:  # the detector's subtype head gives it the three classes too
        assert row["macro_f1"] != "" and "f1_bacterial" in row and row["accuracy_3class"] != ""
    assert int(rows[0]["parameters"]) < int(rows[1]["parameters"])
    assert "## Three classes (kermany3: normal, bacterial, viral)" in (tmp_path / "out" / "report.md").read_text()
    assert outcome.paths["confusion_3class"].is_file()


def test_one_model_with_two_starting_weights_is_two_rows_with_their_paired_test(tmp_path):
    """Transfer learning against training from scratch: one architecture, two rows, the same
    splits and budget; each row's checkpoint says which weights it started from."""
    data = make_kermany(tmp_path / "kermany", n_images=24)
    rows = ["efficientnet_lite0:imagenet", "efficientnet_lite0:none"]
    recipe = tiny_config(
        "model.name=resnet18",
        "model.trainable_backbone_layers=5",
        "task=kermany2",
        "train.monitor=val_f1",
        "train.max_steps_per_epoch=1",
        "train.epochs=1",
    )
    outcome = compare_run.run_compare(rows, recipe, [data], tmp_path / "out", n_resamples=20, log=SILENT)
    with open(tmp_path / "out" / "compare.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["model"] for r in table] == rows
    assert len({r["parameters"] for r in table}) == 1  # the same network
    for row in rows:
        checkpoint = load_checkpoint(tmp_path / "out" / "runs" / row.replace(":", "-") / "checkpoints" / "best.pt")
        assert checkpoint["config"]["model"]["weights"] == row.split(":")[1]
    assert len(outcome.comparisons) == 1 and set(rows) == {outcome.comparisons[0].best, outcome.comparisons[0].other}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| efficientnet_lite0:imagenet |" in report and "| efficientnet_lite0:none |" in report
