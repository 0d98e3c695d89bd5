"""Bootstrap, DeLong and McNemar against cases worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detect.evaluation.stats import (
    bootstrap_ci,
    bootstrap_metrics,
    delong_test,
    mcnemar_test,
    structural_components,
)

# 3 positives, 2 negatives; the components below are counted by hand from psi(x, y).
LABELS = np.array([1, 1, 1, 0, 0])
SCORES_A = np.array([0.9, 0.6, 0.4, 0.5, 0.3])  # positives 0.9 0.6 0.4 | negatives 0.5 0.3
SCORES_B = np.array([0.8, 0.3, 0.7, 0.3, 0.6])  # positives 0.8 0.3 0.7 | negatives 0.3 0.6 (one tie)


def test_structural_components_by_hand():
    v10_a, v01_a = structural_components(LABELS, SCORES_A)
    # 0.9 and 0.6 beat both negatives; 0.4 beats 0.3 only
    np.testing.assert_allclose(v10_a, [1.0, 1.0, 0.5])
    # 0.5 is beaten by 2 of 3 positives; 0.3 by all 3
    np.testing.assert_allclose(v01_a, [2 / 3, 1.0])
    v10_b, v01_b = structural_components(LABELS, SCORES_B)
    # the positive 0.3 ties the negative 0.3 (1/2) and loses to 0.6 (0)
    np.testing.assert_allclose(v10_b, [1.0, 0.25, 1.0])
    np.testing.assert_allclose(v01_b, [2.5 / 3, 2 / 3])


def test_delong_matches_the_hand_worked_variance():
    result = delong_test(LABELS, SCORES_A, SCORES_B)
    assert result.auc_a == pytest.approx(5 / 6)
    assert result.auc_b == pytest.approx(3 / 4)
    assert result.auc_a == pytest.approx(roc_auc_score(LABELS, SCORES_A))
    assert result.auc_b == pytest.approx(roc_auc_score(LABELS, SCORES_B))
    # S10: var(V10_A) = 1/12, var(V10_B) = 3/16, cov = -1/16 -> (1/12 + 3/16 + 1/8) / 3 = 19/144
    # S01: var(V01_A) = 1/18, var(V01_B) = 1/72, cov = -1/36 -> (1/18 + 1/72 + 1/18) / 2 = 9/144
    assert result.variance == pytest.approx(28 / 144)
    assert result.z == pytest.approx((1 / 12) / math.sqrt(28 / 144))
    assert result.p_value == pytest.approx(math.erfc(abs(result.z) / math.sqrt(2)))


def test_delong_is_antisymmetric_and_identical_models_do_not_differ():
    forward, backward = delong_test(LABELS, SCORES_A, SCORES_B), delong_test(LABELS, SCORES_B, SCORES_A)
    assert backward.z == pytest.approx(-forward.z)
    assert backward.p_value == pytest.approx(forward.p_value)
    same = delong_test(LABELS, SCORES_A, SCORES_A)
    assert same.difference == 0 and same.p_value == 1.0


def test_delong_is_undefined_with_one_class():
    result = delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert math.isnan(result.p_value) and math.isnan(result.auc_a)


def test_delong_finds_a_real_difference_on_many_images():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 200)
    good = labels * 2.0 + rng.normal(size=400)
    poor = labels * 0.3 + rng.normal(size=400)
    assert delong_test(labels, good, poor).p_value < 1e-6


def test_mcnemar_exact_binomial_on_few_discordant_pairs():
    # A right / B wrong on 1 image, A wrong / B right on 7; 12 images both right
    correct_a = np.array([True] * 13 + [False] * 7)
    correct_b = np.array([True] * 12 + [False] + [True] * 7)
    result = mcnemar_test(correct_a, correct_b)
    assert (result.a_only, result.b_only) == (1, 7)
    # 2 * P[Bin(8, 1/2) <= 1] = 2 * (1 + 8) / 256
    assert result.exact_p_value == pytest.approx(18 / 256)
    assert result.chi2_statistic == pytest.approx((6 - 1) ** 2 / 8)
    assert result.chi2_p_value == pytest.approx(math.erfc(math.sqrt(25 / 8 / 2)))
    assert result.p_value == result.exact_p_value and result.method == "exact binomial"


def test_mcnemar_chi_square_on_many_discordant_pairs():
    correct_a = np.array([True] * 30 + [False] * 10)
    correct_b = ~correct_a
    result = mcnemar_test(correct_a, correct_b)
    assert result.chi2_statistic == pytest.approx((20 - 1) ** 2 / 40)
    assert result.p_value == result.chi2_p_value == pytest.approx(math.erfc(math.sqrt(361 / 40 / 2)))
    assert result.method.startswith("chi-square")


def test_mcnemar_without_discordant_pairs_is_one():
    result = mcnemar_test([True, False, True], [True, False, True])
    assert result.p_value == 1.0 and result.a_only == result.b_only == 0


def test_bootstrap_is_seeded_and_percentile():
    values = np.random.default_rng(3).normal(size=50)
    first = bootstrap_ci(np.mean, values, n_resamples=300, seed=7)
    again = bootstrap_ci(np.mean, values, n_resamples=300, seed=7)
    other = bootstrap_ci(np.mean, values, n_resamples=300, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low <= first.estimate <= first.high
    assert first.estimate == pytest.approx(values.mean())
    # the mean's bootstrap spread is close to the standard error: 1.96 * sd / sqrt(n) on each side
    half_width = 1.96 * values.std() / math.sqrt(values.size)
    assert (first.high - first.low) / 2 == pytest.approx(half_width, rel=0.25)


def test_bootstrap_of_two_values_spans_both():
    # resampled means of [0, 1] are 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles of many draws are 0 and 1
    ci = bootstrap_ci(np.mean, np.array([0.0, 1.0]), n_resamples=2000, seed=0)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_bootstrap_of_a_degenerate_sample_has_zero_width():
    ci = bootstrap_ci(np.mean, np.full(20, 0.8), n_resamples=200, seed=0)
    assert ci.low == ci.high == ci.estimate == pytest.approx(0.8)


def test_bootstrap_leaves_out_undefined_resamples():
    labels = np.array([1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])

    def auc(index):
        y = labels[index]
        return {"auc": roc_auc_score(y, scores[index]) if 0 < y.sum() < y.size else math.nan}

    ci = bootstrap_metrics(auc, labels.size, n_resamples=200, seed=0)["auc"]
    assert ci.estimate == 1.0 and ci.low == ci.high == 1.0
    assert 0 < ci.n_invalid < 200  # the resamples without the one positive


def test_binary_intervals_equal_the_generic_bootstrap_of_the_metrics():
    from detect.evaluation.metrics import binary_classification_metrics
    from detect.evaluation.stats import binary_intervals

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 60)
    prob = np.clip(truth * 0.3 + rng.random(60) * 0.8, 0, 1).round(2)  # rounded: ties in the ranks
    fast = binary_intervals(truth, prob, 0.5, n_resamples=200, seed=3)
    slow = bootstrap_metrics(
        lambda i: {k: binary_classification_metrics(truth[i], prob[i], 0.5)[k] for k in fast},
        60,
        n_resamples=200,
        seed=3,
    )
    for name in fast:
        assert fast[name].estimate == pytest.approx(slow[name].estimate, abs=1e-12), name
        assert (fast[name].low, fast[name].high) == pytest.approx((slow[name].low, slow[name].high), abs=1e-12), name
        assert fast[name].n_invalid == slow[name].n_invalid
