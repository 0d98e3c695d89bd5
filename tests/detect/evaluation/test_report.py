import json
import math

import numpy as np
import pytest

from detect.evaluation.metrics import binary_classification_metrics, multiclass_metrics
from detect.evaluation.report import format_number, to_json_safe, write_eval_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RSNA_CLASSES = ("Normal", "No Lung Opacity / Not Normal", "Lung Opacity")


def full_metrics():
    rng = np.random.default_rng(0)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.4, 0.7])
    three_true = rng.integers(0, 3, 30)
    three_prob = rng.random((30, 3)) + np.eye(3)[three_true] * 0.5
    return {
        "detection": {
            "rsna_score": np.float64(0.2145678),
            "map": 0.1234567,
            "map50": 0.3456789,
            "map75": np.float32(0.0987),
            "n_images": np.int64(40),
        },
        "classification": {
            "pneumonia": {
                **binary_classification_metrics(y, p, 0.4),
                "threshold_source": "F1-optimal on rsna val at epoch 3 (40 images)",
            },
            "rsna_3class": multiclass_metrics(three_true, three_prob, RSNA_CLASSES),
        },
        "kermany": {
            "pneumonia": binary_classification_metrics(y, p, 0.5),
            "bacterial_viral": {
                **binary_classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.8], 0.65),
                "threshold_source": "F1-optimal on kermany val",
            },
        },
        "operating_points": {
            "rsna": {
                "dataset": "rsna",
                "threshold": 0.4,
                "applied_to": "rsna test",
                "source": "F1-optimal on rsna val at epoch 3 (40 images)",
            }
        },
        "counts": {"test": {"rsna": 40, "kermany": 8}},
        "notes": {"checkpoint": "runs/demo/best.pt", "undefined": math.nan},
    }


def panels():
    image = np.zeros((96, 128), dtype=np.uint8)
    image[20:70, 30:90] = 180
    return [
        {
            "image": image,
            "true_boxes_xyxy": np.array([[30.0, 20.0, 90.0, 70.0]]),
            "pred_boxes_xyxy": np.array([[28.0, 22.0, 85.0, 72.0], [100.0, 5.0, 120.0, 30.0]]),
            "pred_scores": np.array([0.91, 0.12]),
            "title": "rsna 0001 (TP + FP)",
        },
        {
            "image": np.full((64, 64), 90, dtype=np.uint8),
            "true_boxes_xyxy": np.zeros((0, 4)),
            "pred_boxes_xyxy": np.zeros((0, 4)),
            "pred_scores": np.zeros(0),
            "title": "negative",
        },
        {
            "image": np.stack([image] * 3, axis=-1),
            "true_boxes_xyxy": np.array([[10.0, 10.0, 40.0, 50.0]]),
            "pred_boxes_xyxy": np.zeros((0, 4)),
            "pred_scores": np.zeros(0),
            "title": "missed (FN)",
        },
    ]


def curves():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    return {
        "RSNA pneumonia": (y, np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.4, 0.7])),
        "Kermany pneumonia": (y, np.array([0.7, 0.9, 0.6, 0.3, 0.5, 0.1, 0.2, 0.8])),
    }


def test_full_report_writes_every_file(tmp_path):
    metrics = full_metrics()
    paths = write_eval_report(tmp_path / "eval", metrics, curves=curves(), image_panels=panels(), title="demo eval")
    assert set(paths) == {"metrics_json", "report_md", "pr_curve", "roc_curve", "confusion_matrix", "examples"}
    for key in ("pr_curve", "roc_curve", "confusion_matrix", "examples"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, key
        assert paths[key].parent == tmp_path / "eval"


def test_metrics_json_round_trips(tmp_path):
    metrics = full_metrics()
    paths = write_eval_report(tmp_path, metrics)
    loaded = json.loads(paths["metrics_json"].read_text())
    assert loaded == to_json_safe(metrics)
    assert loaded["detection"]["rsna_score"] == 0.2145678
    assert loaded["detection"]["n_images"] == 40 and isinstance(loaded["detection"]["n_images"], int)
    assert loaded["notes"]["undefined"] is None  # nan -> null
    assert loaded["classification"]["pneumonia"]["confusion_matrix"] == [[2, 2], [1, 3]]
    # strict JSON: no NaN token anywhere
    assert "NaN" not in paths["metrics_json"].read_text()


def test_report_md_holds_the_numbers_and_links_the_plots(tmp_path):
    metrics = full_metrics()
    paths = write_eval_report(tmp_path, metrics, curves=curves(), image_panels=panels(), title="demo eval")
    text = paths["report_md"].read_text()
    assert text.startswith("# demo eval\n")
    for line in (
        "| RSNA score (mean over IoU 0.40:0.05:0.75) | 0.2146 |",
        "| mAP@[.50:.05:.95] (COCO) | 0.1235 |",
        "| mAP@.50 | 0.3457 |",
        "| mAP@.75 | 0.0987 |",
        "| images scored (RSNA held-out patients with box labels) | 40 |",
        # binary pneumonia at 0.4: accuracy 5/8, sensitivity 3/4, specificity 1/2, AUC 14/16
        "| accuracy | 0.6250 |",
        "| sensitivity (recall) | 0.7500 |",
        "| specificity | 0.5000 |",
        "| ROC-AUC | 0.8750 |",
        "| Normal | 2 | 2 |",
        "| Pneumonia | 1 | 3 |",
        "| test.rsna | 40 |",
        "| notes.undefined | n/a |",
    ):
        assert line in text, line
    assert "Threshold: 0.4000 (F1-optimal on rsna val at epoch 3 (40 images))" in text
    assert "| rsna | 0.4000 | F1-optimal on rsna val at epoch 3 (40 images) | rsna test |" in text
    assert "Threshold: 0.6500 (F1-optimal on kermany val)" in text
    three = metrics["classification"]["rsna_3class"]
    assert f"| macro F1 | {three['macro_f1']:.4f} |" in text
    opacity = three["per_class"]["Lung Opacity"]
    assert "| class | precision | sensitivity (recall) | F1 | ROC-AUC (one-vs-rest) | support |" in text
    assert (
        f"| Lung Opacity | {format_number(opacity['precision'])} | {format_number(opacity['sensitivity'])} | "
        f"{format_number(opacity['f1'])} | {format_number(opacity['roc_auc'])} | {opacity['support']} |"
    ) in text
    assert "n/a | " + format_number(opacity["f1"]) not in text  # every per-class column is filled
    assert "### Bacterial vs viral" in text and "| accuracy | 1.0000 |  | 0.9070 |" in text
    for name in ("pr_curve.png", "roc_curve.png", "confusion_matrix.png", "examples.png"):
        assert f"]({name})" in text


def test_missing_sections_are_skipped(tmp_path):
    paths = write_eval_report(tmp_path, {"detection": {"rsna_score": 0.5, "map": math.nan}})
    assert set(paths) == {"metrics_json", "report_md"}
    text = paths["report_md"].read_text()
    assert "| RSNA score (mean over IoU 0.40:0.05:0.75) | 0.5000 |" in text
    assert "| mAP@[.50:.05:.95] (COCO) | n/a |" in text
    assert "Classification" not in text and "Kermany" not in text and "## Plots" not in text
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_empty_metrics_still_write_a_report(tmp_path):
    paths = write_eval_report(tmp_path / "new" / "dir", {})
    assert json.loads(paths["metrics_json"].read_text()) == {}
    assert paths["report_md"].read_text() == "# detect evaluation\n"


def test_single_class_curve_is_skipped_and_said_so(tmp_path):
    data = {
        "ok": (np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9])),
        "all negative": (np.zeros(3), np.array([0.1, 0.2, 0.3])),
    }
    paths = write_eval_report(tmp_path, {}, curves=data)
    assert paths["pr_curve"].exists() and paths["roc_curve"].exists()
    assert "No PR/ROC curve for all negative: only one class is present" in paths["report_md"].read_text()


def test_to_json_safe_conversions_and_errors():
    value = {"a": np.array([[1.5, np.inf]]), "b": (np.int32(3), np.bool_(True)), 4: None}
    assert to_json_safe(value) == {"a": [[1.5, None]], "b": [3, True], "4": None}
    with pytest.raises(TypeError, match=r"metrics\.detection\.model: cannot write a object to JSON"):
        to_json_safe({"detection": {"model": object()}})


def test_bad_panel_is_a_clear_error(tmp_path):
    bad = [
        {
            "image": np.zeros((8, 8), np.uint8),
            "pred_boxes_xyxy": np.array([[0.0, 0.0, 4.0, 4.0]]),
            "pred_scores": np.zeros(2),
        }
    ]
    with pytest.raises(ValueError, match=r"image_panels\[0\]: 1 predicted boxes but 2 scores"):
        write_eval_report(tmp_path, {}, image_panels=bad)


def test_report_md_shows_the_bootstrap_intervals_beside_each_value():
    from detect.evaluation.report import render_markdown

    binary = {
        "accuracy": 0.625,
        "roc_auc": 0.875,
        "threshold": 0.4,
        "n": 8,
        "n_positive": 4,
        "confusion_matrix": [[2, 2], [1, 3]],
        "intervals_95": {"accuracy": [0.25, 0.875], "roc_auc": [0.5, 1.0]},
    }
    text = render_markdown({"classification": {"pneumonia": binary}, "counts": {"rsna_test_unreadable": 1}}, {}, "t")
    assert "| metric | value | 95% interval (bootstrap) |" in text
    assert "| accuracy | 0.6250 | [0.250, 0.875] |" in text and "| ROC-AUC | 0.8750 | [0.500, 1.000] |" in text
    assert "| rsna test unreadable files | 1 |" in text
