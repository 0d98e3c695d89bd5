"""Metrics, with every expected number worked by hand in the comments.

Box areas below are products of small integers, so every IoU is a ratio of exact integers and
the division is correctly rounded: 50/100 is the double nearest 0.5, exactly the literal 0.5,
45/100 == 0.45, 60/100 == 0.6 and so on. That is what lets the threshold tests test "> t".
"""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from detect.evaluation.metrics import (
    RSNA_IOU_THRESHOLDS,
    binary_classification_metrics,
    coco_map,
    f1_optimal_threshold,
    iou_matrix,
    multiclass_metrics,
    rsna_image_score,
    rsna_score,
    rsna_score_per_image,
    youden_threshold,
)

NO_BOXES = np.zeros((0, 4))
NO_SCORES = np.zeros((0,))


def boxes(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


# --------------------------------------------------------------------------------------- IoU


def test_rsna_thresholds_are_exact_literals_without_float_drift():
    # 0.40 + 0.05 * 4 computes to 0.6000000000000001; the tuple must hold the literal 0.6.
    assert RSNA_IOU_THRESHOLDS == (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)
    assert 0.40 + 0.05 * 4 != 0.6  # the drift the rounding removes


def test_iou_matrix_worked_by_hand():
    a = boxes([0, 0, 10, 10], [5, 5, 15, 15])
    b = boxes([0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3) and iou.dtype == np.float64
    # [0,0,10,10] vs [0,0,10,5]: inter 10*5 = 50, union 100 + 50 - 50 = 100 -> 0.5 (no +1 pixel)
    assert iou[0, 0] == 0.5
    assert iou[0, 1] == 0.0  # disjoint
    assert iou[0, 2] == 1.0
    # [5,5,15,15] vs [0,0,10,5]: y-overlap is 5..5 = 0 -> touching edges, IoU 0
    assert iou[1, 0] == 0.0
    # [5,5,15,15] vs [0,0,10,10]: inter 5*5 = 25, union 100 + 100 - 25 = 175
    assert iou[1, 2] == pytest.approx(25 / 175, abs=1e-15)


def test_iou_matrix_empty_sides_and_zero_area():
    assert iou_matrix(NO_BOXES, boxes([0, 0, 1, 1])).shape == (0, 1)
    assert iou_matrix(boxes([0, 0, 1, 1]), NO_BOXES).shape == (1, 0)
    # a zero-area box against itself: union 0 -> IoU defined as 0, not nan
    assert iou_matrix(boxes([3, 3, 3, 3]), boxes([3, 3, 3, 3]))[0, 0] == 0.0


def test_iou_matrix_rejects_inverted_boxes_naming_them():
    # an xywh box [50, 60, 20, 30] read as xyxy has x_max < x_min: the classic format bug
    with pytest.raises(ValueError, match=r"boxes_b_xyxy: box 0 \[50.0, 60.0, 20.0, 30.0\] has x_max < x_min"):
        iou_matrix(boxes([0, 0, 1, 1]), boxes([50, 60, 20, 30]))
    with pytest.raises(ValueError, match=r"boxes_a_xyxy: expected boxes of shape \[N, 4\]"):
        iou_matrix(np.zeros((2, 3)), NO_BOXES)


# ------------------------------------------------------------------------------- RSNA score


def test_iou_exactly_at_threshold_is_not_a_hit():
    gt = boxes([0, 0, 10, 10])
    pred = boxes([0, 0, 10, 5])
    assert iou_matrix(pred, gt)[0, 0] == 0.5  # exactly representable
    # t = 0.40, 0.45: 0.5 > t -> TP=1, FP=0, FN=0 -> 1
    # t = 0.50: 0.5 > 0.5 is false -> TP=0, FP=1, FN=1 -> 0; likewise 0.55 ... 0.75
    # mean = (1 + 1 + 6 * 0) / 8 = 0.25
    assert rsna_image_score(pred, np.array([0.9]), gt) == 0.25


def test_iou_of_exactly_045_misses_at_045():
    gt = boxes([0, 0, 10, 10])
    pred = boxes([0, 0, 9, 5])  # inter 45, union 100 + 45 - 45 = 100 -> 45/100 == 0.45
    assert iou_matrix(pred, gt)[0, 0] == RSNA_IOU_THRESHOLDS[1] == 0.45
    # only t = 0.40 is a hit: 1 / 8
    assert rsna_image_score(pred, np.array([0.5]), gt) == 0.125


def test_image_without_gt_and_predictions_is_skipped():
    assert rsna_image_score(NO_BOXES, NO_SCORES, NO_BOXES) is None


def test_false_positive_only_image_scores_zero():
    assert rsna_image_score(boxes([0, 0, 10, 10]), np.array([0.99]), NO_BOXES) == 0.0


def test_gt_without_prediction_scores_zero():
    assert rsna_image_score(NO_BOXES, NO_SCORES, boxes([0, 0, 10, 10], [20, 20, 40, 40])) == 0.0


def test_two_gt_three_predictions_worked_by_hand():
    gt = boxes([0, 0, 100, 100], [200, 200, 300, 300])  # areas 10000 each
    pred = boxes(
        [200, 200, 300, 260],  # score 0.7: IoU with gt[1] = 6000 / 10000 = 0.6
        [0, 0, 100, 80],  # score 0.9: IoU with gt[0] = 8000 / 10000 = 0.8
        [500, 500, 550, 550],  # score 0.5: overlaps nothing -> always FP
    )
    scores = np.array([0.7, 0.9, 0.5])
    np.testing.assert_array_equal(iou_matrix(pred, gt), [[0.0, 0.6], [0.8, 0.0], [0.0, 0.0]])
    # t = 0.40, 0.45, 0.50, 0.55: 0.8 and 0.6 both > t -> TP=2, FP=1, FN=0 -> 2/3
    # t = 0.60, 0.65, 0.70, 0.75: 0.8 > t but 0.6 is not -> TP=1, FP=2, FN=1 -> 1/4
    # mean = (4 * 2/3 + 4 * 1/4) / 8 = (8/3 + 1) / 8 = 11/24
    assert rsna_image_score(pred, scores, gt) == pytest.approx(11 / 24, abs=1e-15)


# g1 = [0,0,10,10], g2 = [10,0,20,10] (side by side, area 100 each)
# p_wide = [0,0,19,10] (area 190): IoU g1 = 100/190 = 0.526..., IoU g2 = 90/(190+100-90) = 90/200 = 0.45
# p_exact = [0,0,10,10]: IoU g1 = 1, IoU g2 = 0
ORDER_GT = boxes([0, 0, 10, 10], [10, 0, 20, 10])
P_WIDE = [0, 0, 19, 10]
P_EXACT = [0, 0, 10, 10]


def test_confidence_order_decides_the_matching():
    # p_wide first (0.9): at t = 0.40, 0.45, 0.50 it takes g1 (its best, 0.526 > t); p_exact then
    #   finds g1 taken and g2 at IoU 0 -> FP; g2 FN -> 1/3.
    #   At t >= 0.55 p_wide is a FP (0.526 <= t), p_exact takes g1, g2 FN -> 1/3.  Mean = 1/3.
    wide_first = rsna_image_score(boxes(P_WIDE, P_EXACT), np.array([0.9, 0.8]), ORDER_GT)
    assert wide_first == pytest.approx(1 / 3, abs=1e-15)
    # p_exact first: it takes g1 at every t; p_wide then only has g2 at IoU 0.45:
    #   t = 0.40: 0.45 > 0.40 -> TP=2, FP=0, FN=0 -> 1
    #   t = 0.45: 0.45 > 0.45 false -> TP=1, FP=1, FN=1 -> 1/3; same for the 6 higher t
    #   mean = (1 + 7/3) / 8 = 5/12
    exact_first = rsna_image_score(boxes(P_WIDE, P_EXACT), np.array([0.8, 0.9]), ORDER_GT)
    assert exact_first == pytest.approx(5 / 12, abs=1e-15)
    # An order-agnostic (maximum) matching would pair p_wide-g2 and p_exact-g1 at t = 0.40 and
    # give 5/12 for both orders; confidence order makes the first case 1/3.
    assert wide_first != exact_first


def test_equal_scores_keep_input_order():
    # Stable sort on -score: with equal scores, the box listed first is matched first.
    same = np.array([0.5, 0.5])
    assert rsna_image_score(boxes(P_WIDE, P_EXACT), same, ORDER_GT) == pytest.approx(1 / 3, abs=1e-15)
    assert rsna_image_score(boxes(P_EXACT, P_WIDE), same, ORDER_GT) == pytest.approx(5 / 12, abs=1e-15)


def test_equal_iou_with_two_gt_goes_to_the_first_gt():
    # p_both = [0,0,20,10] covers g1 and g2: IoU 100/200 = 0.5 with each. Documented tie rule:
    # the lower ground-truth index (g1) is taken.
    # t = 0.40, 0.45: p_both (0.9) takes g1; p_exact (0.8) finds g1 taken, g2 at IoU 0 -> FP;
    #   g2 FN -> 1/3. t >= 0.50: p_both FP (0.5 is not > t), p_exact takes g1, g2 FN -> 1/3.
    # mean = 1/3 (taking g2 instead would give (1 + 1 + 6/3) / 8 = 1/2)
    pred = boxes([0, 0, 20, 10], P_EXACT)
    np.testing.assert_array_equal(iou_matrix(pred[:1], ORDER_GT), [[0.5, 0.5]])
    assert rsna_image_score(pred, np.array([0.9, 0.8]), ORDER_GT) == pytest.approx(1 / 3, abs=1e-15)


def test_rsna_score_excludes_skipped_images_from_the_mean():
    gt = {"empty": NO_BOXES, "half": boxes([0, 0, 10, 10])}
    predictions = {"half": (boxes([0, 0, 10, 5]), np.array([0.9]))}  # 0.25, see above
    assert rsna_score_per_image(predictions, gt) == {"empty": None, "half": 0.25}
    assert rsna_score(predictions, gt) == 0.25  # not (0 + 0.25) / 2


def test_rsna_score_mean_over_images_and_missing_predictions():
    gt = {
        "skipped": NO_BOXES,
        "half": boxes([0, 0, 10, 10]),  # 0.25
        "fp_only": NO_BOXES,  # 0
        "not_predicted": boxes([0, 0, 10, 10]),  # absent from predictions -> no boxes -> 0
        "perfect": boxes([5, 5, 50, 50]),  # 1
    }
    predictions = {
        "half": (boxes([0, 0, 10, 5]), np.array([0.9])),
        "fp_only": (boxes([1, 1, 2, 2]), np.array([0.1])),
        "perfect": (boxes([5, 5, 50, 50]), np.array([0.3])),
        "skipped": (NO_BOXES, NO_SCORES),
    }
    # (0.25 + 0 + 0 + 1) / 4 = 0.3125
    assert rsna_score(predictions, gt) == 0.3125


def test_rsna_score_all_skipped_is_nan():
    assert math.isnan(rsna_score({}, {"a": NO_BOXES}))


def test_predictions_for_unknown_images_are_an_error():
    with pytest.raises(ValueError, match=r"1 image id\(s\) absent from the ground truth, e.g. 'typo'"):
        rsna_score({"typo": (boxes([0, 0, 1, 1]), np.array([1.0]))}, {"real": NO_BOXES})


def test_bad_prediction_names_the_image():
    with pytest.raises(ValueError, match=r"image 'a': pred_scores: 1 boxes but 2 scores"):
        rsna_score({"a": (boxes([0, 0, 1, 1]), np.array([0.1, 0.2]))}, {"a": NO_BOXES})


# -------------------------------------------------------------------------------- COCO AP


def test_coco_ap_worked_by_hand():
    gt = {"a": boxes([0, 0, 10, 10], [20, 20, 30, 30])}
    predictions = {"a": (boxes([0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]), np.array([0.9, 0.8, 0.7]))}
    # ranked: TP, FP, TP -> recall 0.5, 0.5, 1.0; precision 1, 1/2, 2/3
    # envelope (max to the right): 1, 2/3, 2/3
    # recall points 0.00 ... 0.50 (51 points) -> precision 1; 0.51 ... 1.00 (50 points) -> 2/3
    # AP = (51 * 1 + 50 * 2/3) / 101
    assert coco_map(predictions, gt)["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)


def test_coco_ap_at_iou_equal_threshold_counts_as_a_match():
    # COCO matches at IoU >= t (unlike the RSNA score's > t): IoU 0.5 at t = 0.5 is a TP.
    gt = {"a": boxes([0, 0, 10, 10])}
    predictions = {"a": (boxes([0, 0, 10, 5]), np.array([0.9]))}
    assert coco_map(predictions, gt)["map50"] == pytest.approx(1.0, abs=1e-12)


def test_coco_ap_equal_iou_goes_to_the_last_gt():
    # COCOeval.evaluateImg keeps scanning on IoU ties, so the LAST of equal-IoU gts is taken.
    # d1 = [0,0,20,10] (0.9): IoU 0.5 with g1 and g2 -> takes g2; d2 = g1 exactly (0.8) -> g1.
    # Two TPs -> AP@0.5 = 1. (Taking g1 would leave d2 a FP: AP = 51/101.)
    gt = {"a": ORDER_GT}
    predictions = {"a": (boxes([0, 0, 20, 10], P_EXACT), np.array([0.9, 0.8]))}
    assert coco_map(predictions, gt)["map50"] == pytest.approx(1.0, abs=1e-12)


def test_coco_map_perfect_predictions_is_one():
    gt = {"a": boxes([0, 0, 10, 10], [20, 20, 60, 80]), "b": NO_BOXES, "c": boxes([5, 5, 25, 45])}
    predictions = {k: (v, np.linspace(0.9, 0.5, len(v))) for k, v in gt.items()}
    assert coco_map(predictions, gt) == {"map": 1.0, "map50": 1.0, "map75": 1.0}


def test_coco_map_without_predictions_is_zero():
    gt = {"a": boxes([0, 0, 10, 10]), "b": NO_BOXES}
    assert coco_map({}, gt) == {"map": 0.0, "map50": 0.0, "map75": 0.0}


def test_coco_map_without_ground_truth_is_nan_not_a_crash():
    predictions = {"b": (boxes([0, 0, 10, 10]), np.array([0.4]))}
    result = coco_map(predictions, {"a": NO_BOXES, "b": NO_BOXES})
    assert set(result) == {"map", "map50", "map75"}
    assert all(math.isnan(v) for v in result.values())
    assert math.isnan(coco_map({}, {})["map"])


def test_false_positives_on_images_without_gt_lower_coco_ap():
    gt = {"a": boxes([0, 0, 10, 10]), "b": NO_BOXES}
    # the FP on image b outranks the TP on image a: precision 0 then 1/2, recall 0 then 1
    # envelope -> 1/2 at every recall point -> AP = 0.5
    predictions = {"a": (boxes([0, 0, 10, 10]), np.array([0.5])), "b": (boxes([0, 0, 10, 10]), np.array([0.9]))}
    assert coco_map(predictions, gt)["map50"] == pytest.approx(0.5, abs=1e-12)


# ------------------------------------------------------------------------------ classification

# 8 samples. Sorted by probability: 0.9 P, 0.8 P, 0.7 P, 0.6 N, 0.4 N, 0.3 P, 0.2 N, 0.1 N
Y_TRUE = np.array([1, 1, 1, 0, 0, 0, 0, 1])
Y_PROB = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.4, 0.7])


def test_binary_metrics_worked_by_hand():
    m = binary_classification_metrics(Y_TRUE, Y_PROB, threshold=0.4)
    # predicted positive (prob >= 0.4; 0.4 itself counts): samples 0, 1, 3, 6, 7
    # TP = {0, 1, 7} = 3, FP = {3, 6} = 2, FN = {2} = 1, TN = {4, 5} = 2
    assert m["confusion_matrix"] == [[2, 2], [1, 3]]
    assert m["accuracy"] == 5 / 8
    assert m["precision"] == 3 / 5
    assert m["sensitivity"] == 3 / 4 and "recall" not in m  # one name for one number
    assert m["specificity"] == 2 / 4
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1), abs=1e-15)  # 2/3
    # ROC-AUC: of 4 x 4 (positive, negative) pairs, 0.9, 0.8, 0.7 beat all 4 negatives and
    # 0.3 beats 0.2 and 0.1 -> 14/16
    assert m["roc_auc"] == pytest.approx(14 / 16, abs=1e-15)
    # AP: positives at ranks 1, 2, 3, 6 -> precisions 1, 1, 1, 4/6, each recall step 1/4
    # -> (1 + 1 + 1 + 2/3) / 4 = 11/12
    assert m["pr_auc"] == pytest.approx(11 / 12, abs=1e-15)
    assert (m["n"], m["n_positive"], m["threshold"]) == (8, 4, 0.4)


def test_binary_metrics_undefined_values_are_nan():
    m = binary_classification_metrics([0, 0, 0], [0.1, 0.2, 0.3], threshold=0.5)
    assert m["confusion_matrix"] == [[3, 0], [0, 0]]
    assert m["accuracy"] == 1.0 and m["specificity"] == 1.0
    for key in ("precision", "sensitivity", "f1", "roc_auc", "pr_auc"):
        assert math.isnan(m[key]), key


def test_binary_metrics_bad_input():
    with pytest.raises(ValueError, match="y_true has 2 labels but y_prob has 3 probabilities"):
        binary_classification_metrics([0, 1], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(ValueError, match=r"y_true must hold only 0 and 1, got values \[0, 2\]"):
        binary_classification_metrics([0, 2], [0.1, 0.2], 0.5)


def test_f1_optimal_threshold_worked_by_hand():
    # cut at each observed value (predict positive when prob >= cut), F1 = 2TP / (2TP + FP + FN):
    # 0.9: TP1 FP0 FN3 -> 2/5;   0.8: TP2 FN2 -> 4/6;   0.7: TP3 FN1 -> 6/7 (best)
    # 0.6: TP3 FP1 FN1 -> 6/8;   0.4: TP3 FP2 FN1 -> 6/9; 0.3: TP4 FP2 -> 8/10
    # 0.2: TP4 FP3 -> 8/11;      0.1: TP4 FP4 -> 8/12
    assert f1_optimal_threshold(Y_TRUE, Y_PROB) == 0.7
    best = binary_classification_metrics(Y_TRUE, Y_PROB, 0.7)["f1"]
    assert best == pytest.approx(6 / 7, abs=1e-15)
    assert best == pytest.approx(f1_score(Y_TRUE, Y_PROB >= 0.7), abs=1e-15)


def test_f1_optimal_threshold_ties_and_equal_probabilities():
    # equal F1: cut 0.9 -> TP1 FN1 -> 2/3; cut 0.2 -> TP2 FP2 -> 4/6 = 2/3: the higher cut wins
    assert f1_optimal_threshold([1, 0, 0, 1], [0.9, 0.6, 0.5, 0.2]) == 0.9
    # equal probabilities cannot be split: "0.5 with only the first 0.5 positive" (F1 1.0) is not
    # a threshold. Real cuts: 0.9 -> TP1 FN1 -> 2/3; 0.5 -> TP2 FP3 -> 4/7. Answer 0.9.
    assert f1_optimal_threshold([1, 1, 0, 0, 0], [0.9, 0.5, 0.5, 0.5, 0.5]) == 0.9


def test_f1_optimal_threshold_needs_a_positive():
    with pytest.raises(ValueError, match="needs at least one positive label"):
        f1_optimal_threshold([0, 0], [0.3, 0.4])


CLASSES = ("Normal", "No Lung Opacity / Not Normal", "Lung Opacity")
MC_TRUE = np.array([0, 0, 1, 1, 2, 2])
MC_PROB = np.array(
    [
        [0.7, 0.2, 0.1],  # true 0, predicted 0
        [0.4, 0.5, 0.1],  # true 0, predicted 1
        [0.1, 0.8, 0.1],  # true 1, predicted 1
        [0.2, 0.6, 0.2],  # true 1, predicted 1
        [0.1, 0.2, 0.7],  # true 2, predicted 2
        [0.5, 0.1, 0.4],  # true 2, predicted 0
    ]
)


def test_multiclass_metrics_worked_by_hand():
    m = multiclass_metrics(MC_TRUE, MC_PROB, CLASSES)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == 4 / 6
    normal, not_normal, opacity = (m["per_class"][c] for c in CLASSES)
    # class 0: TP1 FP1 FN1 -> P 1/2, R 1/2, F1 2/4
    assert (normal["precision"], normal["sensitivity"], normal["f1"], normal["support"]) == (0.5, 0.5, 0.5, 2)
    # class 1: TP2 FP1 FN0 -> P 2/3, R 1, F1 4/5
    assert not_normal["precision"] == 2 / 3 and not_normal["sensitivity"] == 1.0
    assert not_normal["f1"] == pytest.approx(0.8, abs=1e-15)
    # class 2: TP1 FP0 FN1 -> P 1, R 1/2, F1 2/3
    assert opacity["precision"] == 1.0 and opacity["sensitivity"] == 0.5
    assert opacity["f1"] == pytest.approx(2 / 3, abs=1e-15)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-15)
    assert m["macro_f1"] == pytest.approx(f1_score(MC_TRUE, MC_PROB.argmax(1), average="macro"), abs=1e-15)
    # one-vs-rest AUC, class 0: positives 0.7, 0.4 vs negatives 0.1, 0.2, 0.1, 0.5:
    # 0.7 beats 4, 0.4 beats 3 -> 7/8. Classes 1 and 2 separate perfectly -> 1.
    assert normal["roc_auc"] == pytest.approx(7 / 8, abs=1e-15)
    assert not_normal["roc_auc"] == 1.0 and opacity["roc_auc"] == 1.0
    assert normal["roc_auc"] == pytest.approx(roc_auc_score(MC_TRUE == 0, MC_PROB[:, 0]), abs=1e-15)
    assert m["macro_roc_auc"] == pytest.approx((7 / 8 + 2) / 3, abs=1e-15)
    assert m["class_names"] == list(CLASSES) and m["n"] == 6


def test_multiclass_absent_class_gives_nan_not_zero():
    m = multiclass_metrics([0, 1, 0], [[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.3, 0.1]], CLASSES)
    absent = m["per_class"]["Lung Opacity"]
    assert absent["support"] == 0
    for key in ("precision", "sensitivity", "f1", "roc_auc"):
        assert math.isnan(absent[key]), key
    assert m["macro_f1"] == 1.0  # mean of the two defined F1 values (both 1)


def test_multiclass_bad_shape_names_the_classes():
    with pytest.raises(ValueError, match=r"y_prob must have shape \[N, 3\] for classes"):
        multiclass_metrics([0], [[0.5, 0.5]], CLASSES)
    with pytest.raises(ValueError, match=r"integer class indices 0..2, got \[3\]"):
        multiclass_metrics([3], [[0.2, 0.3, 0.5]], CLASSES)


def test_sklearn_agrees_on_random_binary_case():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    m = binary_classification_metrics(y, p, 0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-15)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-15)
    assert m["f1"] == pytest.approx(f1_score(y, p >= 0.5), abs=1e-15)


def test_youden_threshold_worked_by_hand_is_higher_than_f1s_when_positives_dominate():
    # cut >= t: 0.95 tp1 fp0, 0.9 tp2, 0.8 tp3, 0.7 tp4 (J 4/6), 0.6 tp4 fp1, 0.5 tp5 fp1,
    # 0.4 tp6 fp1 (F1 12/13, the best; J 1/2), 0.1 tp6 fp2
    y_true = [0, 0, 1, 1, 1, 1, 1, 1]
    y_prob = [0.1, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95]
    assert f1_optimal_threshold(y_true, y_prob) == 0.4
    assert youden_threshold(y_true, y_prob) == 0.7
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1], [0.2, 0.3])


def test_operating_point_rule_names_how_it_was_chosen():
    from detect.evaluation.scoring import choose_operating_point

    y_true, y_prob = np.array([0, 0, 1, 1, 1, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95])
    youden = choose_operating_point("kermany", y_true, y_prob, "val at epoch 3", rule="youden")
    assert (youden.threshold, youden.source) == (0.7, "Youden-optimal on kermany val at epoch 3 (8 images)")
    assert choose_operating_point("kermany", y_true, y_prob, "val at epoch 3").threshold == 0.4
    only_positives = choose_operating_point("kermany", np.array([1, 1]), np.array([0.3, 0.6]), "val", rule="youden")
    assert only_positives.source.startswith("F1-optimal")  # J needs a negative: F1's rule instead
