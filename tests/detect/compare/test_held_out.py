"""detect.compare.held_out and the paired tests of detect.compare.run, on predictions built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from detect.compare.held_out import HeldOutPredictions, held_out_metrics, metrics_at
from detect.compare.report import compare_rows
from detect.compare.run import ModelResult, best_model, paired_comparison
from detect.evaluation.stats import delong_test, mcnemar_test


def _predictions(ids, y_true, y_prob, threshold=0.5, class_true=None, class_probs=None):
    y_prob = np.asarray(y_prob, dtype=np.float64)
    n = len(ids)
    return HeldOutPredictions(
        image_ids=list(ids),
        datasets=["kermany"] * n,
        y_true=np.asarray(y_true, dtype=np.int64),
        y_prob=y_prob,
        decided=(y_prob >= threshold).astype(np.int64),
        thresholds={"kermany": threshold},
        class_true=np.asarray(class_true if class_true is not None else [-1] * n, dtype=np.int64),
        class_probs=np.asarray(class_probs if class_probs is not None else np.full((n, 3), 1 / 3), dtype=np.float64),
        predict_seconds=0.5,
    )


def test_metrics_at_the_threshold_and_from_the_ranking():
    # threshold 0.5: decisions 1 1 0 | 1 0 0 against truth 1 1 1 | 0 0 0 -> tp 2, fn 1, fp 1, tn 2
    p = _predictions("abcdef", [1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    m = metrics_at(p, np.arange(6), "kermany2")
    assert m["accuracy"] == pytest.approx(4 / 6) and m["precision"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # ranking: of the 9 positive/negative pairs only (0.3, 0.7) is misordered
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert p.infer_ms_per_image == pytest.approx(500 / 6) and p.infer_images_per_s == pytest.approx(12.0)


def test_three_class_metrics_per_class_and_macro():
    probs = np.eye(3)[[0, 1, 2, 2]]  # predicted normal, bacterial, viral, viral
    p = _predictions("abcd", [0, 1, 1, 1], [0.1, 0.9, 0.9, 0.9], class_true=[0, 1, 2, 1], class_probs=probs)
    m = metrics_at(p, np.arange(4), "kermany3")
    assert m["accuracy_3class"] == pytest.approx(3 / 4)
    assert m["f1_normal"] == 1.0 and m["f1_viral"] == pytest.approx(2 / 3) and m["f1_bacterial"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    cis = held_out_metrics(p, "kermany3", n_resamples=30, seed=0)
    assert cis["macro_f1"].estimate == pytest.approx(m["macro_f1"]) and cis["macro_f1"].n_resamples == 30


def _result(name, predictions):
    return ModelResult(
        model=name,
        kind="detector",
        task="detection",
        parameters=10,
        epochs_run=1,
        best_epoch=1,
        stopped_on_time=False,
        train_seconds=1.0,
        train_images_per_s=2.0,
        predictions=predictions,
        metrics=held_out_metrics(predictions, "detection", n_resamples=20, seed=0),
    )


def test_paired_tests_align_the_images_by_id():
    truth = [1, 1, 1, 0, 0, 0]
    good = _predictions("abcdef", truth, [0.9, 0.8, 0.6, 0.4, 0.2, 0.1])
    # the other model read the same images in another order, and one (f) failed to read
    order = [4, 0, 3, 2, 1]
    other_prob = np.array([0.7, 0.15, 0.6, 0.2, 0.1, 0.5])  # b below d: AUC 5/6
    poor = _predictions([("abcdef")[i] for i in order], [truth[i] for i in order], other_prob[order])
    results = [_result("poor", poor), _result("good", good)]
    best = best_model(results)
    assert best.model == "good"
    comparison = paired_comparison(best, results[0])
    keep = np.arange(5)  # a-e
    expected = delong_test(np.array(truth)[keep], good.y_prob[keep], other_prob[keep])
    assert comparison.n_images == 5 and comparison.delong.z == pytest.approx(expected.z)
    assert comparison.mcnemar == mcnemar_test(
        good.decided[keep] == np.array(truth)[keep], (other_prob[keep] >= 0.5) == np.array(truth)[keep]
    )
    rows = compare_rows(results, [comparison])
    assert rows[1]["delong_p_vs_best"] == "" and rows[0]["delong_p_vs_best"] != ""
    assert rows[0]["model"] == "poor" and rows[0]["thresholds"] == "kermany=0.5"
    assert float(rows[1]["roc_auc"]) == pytest.approx(1.0)
