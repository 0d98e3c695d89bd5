"""Uncertainty and paired significance for comparing models on one test set.

    ci = bootstrap_ci(lambda y, p: roc_auc(y, p), y_true, y_prob, seed=0)          ConfidenceInterval
    cis = bootstrap_metrics(lambda idx: {...}, n_samples, seed=0)                    {name: ConfidenceInterval}
    cis = binary_intervals(y_true, y_prob, threshold, seed=0)                        the eval report's intervals
    delong_test(y_true, scores_a, scores_b)                                          DeLongResult
    mcnemar_test(correct_a, correct_b)                                               McNemarResult

Bootstrap: the test images are resampled with replacement (all arrays by the same indices, so
paired quantities stay paired), the statistic is recomputed on each resample, and the interval
is the percentile interval of those values ((1 - confidence) / 2 and (1 + confidence) / 2
quantiles, numpy's linear interpolation). A resample on which the statistic is undefined (nan:
e.g. ROC-AUC of a resample holding one class only) is left out and counted in `n_invalid`.

DeLong, DeLong and Clarke-Pearson (1988): two correlated ROC-AUCs measured on the same images.
With m positives X_i and n negatives Y_j, psi(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise,
each model's structural components are
    V10(X_i) = mean_j psi(X_i, Y_j)   (one per positive)     V01(Y_j) = mean_i psi(X_i, Y_j)   (one per negative)
and AUC = mean(V10) = mean(V01). With S10, S01 the 2 x 2 sample covariance matrices (ddof 1)
of the two models' V10 and V01,
    Var(AUC_a - AUC_b) = (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n
and z = (AUC_a - AUC_b) / sqrt(Var) is standard normal under equal AUCs (two-sided p-value).
The components are counted from sorted scores (searchsorted): O((m + n) log(m + n)), no m x n matrix.

McNemar: the paired 0/1 outcomes (correct or not at each model's threshold) of two models on
the same images. Only the discordant images count: b = A right and B wrong, c = A wrong and B
right. The exact test is the two-sided binomial test of b out of b + c at 1/2
(p = min(1, 2 P[Bin(b + c, 1/2) <= min(b, c)])); the chi-square test with continuity correction
uses max(|b - c| - 1, 0)^2 / (b + c) on 1 degree of freedom (the correction never
flips the sign of |b - c|). `p_value` is the exact one when
b + c < 25 (where the chi-square approximation is poor), the chi-square one above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

MCNEMAR_EXACT_BELOW: int = 25  # discordant pairs under which the exact binomial p-value is reported


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate on the full sample and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_invalid: int  # resamples on which the statistic was nan (left out)

    def format(self, digits: int = 3) -> str:
        if not math.isfinite(self.estimate):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.estimate:.{digits}f}"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _resample_indices(n_samples: int, n_resamples: int, seed: int) -> np.ndarray:
    if n_samples < 1:
        raise ValueError("bootstrap needs at least one sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_samples, size=(n_resamples, n_samples))


def _percentile_interval(
    estimate: float, values: Sequence[float], confidence: float, n_resamples: int
) -> ConfidenceInterval:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n_invalid = n_resamples - finite.size
    if not finite.size:
        return ConfidenceInterval(float(estimate), math.nan, math.nan, confidence, n_resamples, n_invalid)
    low, high = np.percentile(finite, [50 * (1 - confidence), 50 * (1 + confidence)])
    return ConfidenceInterval(float(estimate), float(low), float(high), confidence, n_resamples, n_invalid)


def bootstrap_metrics(
    statistics: Callable[[np.ndarray], Mapping[str, float]],
    n_samples: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, ConfidenceInterval]:
    """Percentile intervals of several statistics computed from the same resamples.

    `statistics(index)` gets int64 indices into the n_samples test images (np.arange(n_samples)
    for the point estimate) and returns {name: value}. Seeded: the same seed, the same intervals.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    estimates = dict(statistics(np.arange(n_samples)))
    draws: dict[str, list[float]] = {name: [] for name in estimates}
    for index in _resample_indices(n_samples, n_resamples, seed):
        values = statistics(index)
        for name in estimates:
            draws[name].append(float(values.get(name, math.nan)))
    return {name: _percentile_interval(estimates[name], draws[name], confidence, n_resamples) for name in estimates}


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray | Sequence[float],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile interval of `statistic(*arrays)`, the arrays resampled together (same indices)."""
    columns = [np.asarray(a) for a in arrays]
    if not columns:
        raise ValueError("bootstrap_ci needs at least one array")
    n_samples = columns[0].shape[0]
    if any(c.shape[0] != n_samples for c in columns):
        raise ValueError(f"bootstrap_ci: arrays of different lengths {[c.shape[0] for c in columns]}")
    result = bootstrap_metrics(
        lambda index: {"value": float(statistic(*(c[index] for c in columns)))},
        n_samples,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    return result["value"]


BINARY_INTERVAL_METRICS: tuple[str, ...] = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc")


def binary_intervals(
    y_true: np.ndarray | Sequence[int],
    y_prob: np.ndarray | Sequence[float],
    threshold: float,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, ConfidenceInterval]:
    """Bootstrap intervals of the thresholded metrics and ROC-AUC of one binary decision, computed for
    every resample at once (confusion counts, and ROC-AUC from ranks, as Mann-Whitney's U: ties count
    1/2, as in sklearn), so that 1000 resamples cost milliseconds. The same resampling and percentile
    rule as bootstrap_metrics; a metric undefined on a resample (no positive, ...) is left out of it."""
    truth = np.asarray(y_true, dtype=np.int64)
    prob = np.asarray(y_prob, dtype=np.float64)
    n = truth.shape[0]
    index = np.vstack([np.arange(n)[None, :], _resample_indices(n, n_resamples, seed)])  # row 0: the estimate
    t, p = truth[index] == 1, prob[index]
    decided = p >= threshold
    tp, fp = np.sum(decided & t, axis=1), np.sum(decided & ~t, axis=1)
    fn, tn = np.sum(~decided & t, axis=1), np.sum(~decided & ~t, axis=1)
    n_pos, n_neg = tp + fn, tn + fp
    ranks = scipy_stats.rankdata(p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "accuracy": (tp + tn) / n,
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "sensitivity": np.where(n_pos > 0, tp / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, tn / n_neg, np.nan),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "roc_auc": np.where(
                (n_pos > 0) & (n_neg > 0),
                (np.sum(ranks * t, axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg),
                np.nan,
            ),
        }
    return {
        name: _percentile_interval(float(v[0]), v[1:].tolist(), confidence, n_resamples) for name, v in values.items()
    }


# ----------------------------------------------------------------------------------- DeLong


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    variance: float  # of the difference
    z: float
    p_value: float  # two-sided; nan when the AUCs are undefined (one class only)


def structural_components(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V10 [m]: one per positive, V01 [n]: one per negative), see the module docstring."""
    truth = np.asarray(y_true).reshape(-1).astype(bool)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives, negatives = values[truth], values[~truth]
    neg_sorted, pos_sorted = np.sort(negatives), np.sort(positives)
    below = np.searchsorted(neg_sorted, positives, side="left")  # negatives < x
    not_above = np.searchsorted(neg_sorted, positives, side="right")  # negatives <= x
    v10 = (below + 0.5 * (not_above - below)) / negatives.size
    pos_not_above = np.searchsorted(pos_sorted, negatives, side="right")  # positives <= y
    pos_below = np.searchsorted(pos_sorted, negatives, side="left")  # positives < y
    v01 = (positives.size - pos_not_above + 0.5 * (pos_not_above - pos_below)) / positives.size
    return v10, v01


def delong_test(
    y_true: np.ndarray | Sequence[int], scores_a: np.ndarray | Sequence[float], scores_b: np.ndarray | Sequence[float]
) -> DeLongResult:
    """Paired DeLong test of AUC_a = AUC_b on the same images (see the module docstring)."""
    truth = np.asarray(y_true).reshape(-1)
    a, b = np.asarray(scores_a, dtype=np.float64).reshape(-1), np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if not truth.shape == a.shape == b.shape:
        raise ValueError(f"delong_test: {truth.shape[0]} labels, {a.shape[0]} and {b.shape[0]} scores")
    m, n = int(truth.sum()), int(truth.shape[0] - truth.sum())
    if m < 2 or n < 2:  # a covariance needs two of each
        return DeLongResult(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    v10_a, v01_a = structural_components(truth, a)
    v10_b, v01_b = structural_components(truth, b)
    s10 = np.cov(np.vstack([v10_a, v10_b]), ddof=1)
    s01 = np.cov(np.vstack([v01_a, v01_b]), ddof=1)
    variance = float((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    difference = auc_a - auc_b
    if variance <= 0:  # identical rankings: no evidence of any difference
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        return DeLongResult(auc_a, auc_b, difference, max(variance, 0.0), z, 1.0 if difference == 0 else 0.0)
    z = difference / math.sqrt(variance)
    return DeLongResult(auc_a, auc_b, difference, variance, z, float(2 * scipy_stats.norm.sf(abs(z))))


# ---------------------------------------------------------------------------------- McNemar


@dataclass(frozen=True)
class McNemarResult:
    a_only: int  # b: images model A got right and model B wrong
    b_only: int  # c: images model B got right and model A wrong
    exact_p_value: float
    chi2_statistic: float  # with continuity correction
    chi2_p_value: float
    p_value: float  # the exact one below MCNEMAR_EXACT_BELOW discordant pairs, else the chi-square one
    method: str  # "exact binomial" | "chi-square, continuity-corrected"


def mcnemar_test(correct_a: np.ndarray | Sequence[bool], correct_b: np.ndarray | Sequence[bool]) -> McNemarResult:
    """McNemar's test on paired correct/incorrect outcomes of two models (see the module docstring)."""
    a = np.asarray(correct_a).reshape(-1).astype(bool)
    b = np.asarray(correct_b).reshape(-1).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar_test: {a.shape[0]} and {b.shape[0]} outcomes; they must be paired")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    if discordant == 0:
        return McNemarResult(a_only, b_only, 1.0, 0.0, 1.0, 1.0, "exact binomial")
    exact = min(1.0, 2.0 * float(scipy_stats.binom.cdf(min(a_only, b_only), discordant, 0.5)))
    chi2 = max(abs(a_only - b_only) - 1.0, 0.0) ** 2 / discordant
    chi2_p = float(scipy_stats.chi2.sf(chi2, df=1))
    if discordant < MCNEMAR_EXACT_BELOW:
        return McNemarResult(a_only, b_only, exact, chi2, chi2_p, exact, "exact binomial")
    return McNemarResult(a_only, b_only, exact, chi2, chi2_p, chi2_p, "chi-square, continuity-corrected")
