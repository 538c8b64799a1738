"""Metrics against values computed by hand, against scikit-learn, and on edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, log_loss, roc_auc_score

from cud_bench.metrics import (
    METRICS,
    STANDARD_SPECS,
    WEIGHTED,
    MetricValue,
    Predictions,
    accuracy,
    aurc,
    bootstrap_interval,
    brier,
    classwise_ece,
    compute_all,
    ece,
    macro_f1,
    mce,
    mean_confidence,
    nll,
    ood_auroc,
    paired_bootstrap,
    reliability_bins,
)
from cud_bench.specs import MetricSpec

# Four examples, three classes. Predicted class, confidence and outcome per row:
#   row 0: class 0, 0.7, right    row 1: class 1, 0.6, wrong (label 2)
#   row 2: class 2, 0.6, right    row 3: class 0, 0.5, wrong (label 1)
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
LABELS = np.array([0, 2, 2, 1])


def random_predictions(n: int, n_classes: int, seed: int, sharpness: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of scaled Gaussian logits, labels agreeing with the argmax about half the time."""
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.standard_normal((n, n_classes))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.where(rng.random(n) < 0.5, probs.argmax(axis=1), rng.integers(0, n_classes, n))
    return probs, labels


# -- hand-computed values --------------------------------------------------------------


def test_accuracy_and_mean_confidence_by_hand():
    assert accuracy(PROBS, LABELS) == pytest.approx(2 / 4)
    assert mean_confidence(PROBS, LABELS) == pytest.approx((0.7 + 0.6 + 0.6 + 0.5) / 4)


def test_macro_f1_by_hand():
    # class: (true, predicted, hits) -> F1 = 2 hits / (true + predicted)
    # 0: (1, 2, 1) -> 2/3;  1: (1, 1, 0) -> 0;  2: (2, 1, 1) -> 2/3
    assert macro_f1(PROBS, LABELS) == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)


def test_nll_by_hand():
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.6) + math.log(0.4)) / 4
    assert nll(PROBS, LABELS) == pytest.approx(expected)


def test_nll_clips_zero_probability_of_the_label():
    assert nll([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))


def test_brier_by_hand():
    rows = [
        0.3**2 + 0.2**2 + 0.1**2,  # label 0
        0.1**2 + 0.6**2 + 0.7**2,  # label 2
        0.2**2 + 0.2**2 + 0.4**2,  # label 2
        0.5**2 + 0.6**2 + 0.1**2,  # label 1
    ]
    assert brier(PROBS, LABELS) == pytest.approx(sum(rows) / 4)  # 0.465


def test_ece_and_mce_by_hand_with_boundary_and_empty_bins():
    # Two bins (0, .5], (.5, 1]: a confidence of exactly .5 belongs to the first.
    #   bin 0: {row 3}: conf .5, acc 0 -> weight 1/4, gap .5
    #   bin 1: {rows 0-2}: conf 1.9/3, acc 2/3 -> weight 3/4, gap .1/3
    expected = 0.25 * 0.5 + 0.75 * (0.1 / 3)
    assert ece(PROBS, LABELS, n_bins=2) == pytest.approx(expected)  # 0.15
    assert mce(PROBS, LABELS, n_bins=2) == pytest.approx(0.5)
    # Four bins put the rows in bins 1 and 2 the same way and leave bins 0 and 3 empty.
    assert ece(PROBS, LABELS, n_bins=4) == pytest.approx(expected)
    assert mce(PROBS, LABELS, n_bins=4) == pytest.approx(0.5)


def test_quantile_bins_by_hand_keep_ties_together():
    # Sorted confidences .5 .6 .6 .7; the median (inverted CDF) is .6, so the bins are
    # (0, .6] = {rows 3, 1, 2} and (.6, 1] = {row 0}: the tie is not split.
    #   bin 0: summed conf 1.7, 1 right -> |1 - 1.7| = .7;  bin 1: |1 - .7| = .3
    assert ece(PROBS, LABELS, n_bins=2, strategy="quantile") == pytest.approx((0.7 + 0.3) / 4)
    bins = reliability_bins(PROBS, LABELS, n_bins=2, strategy="quantile")
    np.testing.assert_array_equal(bins.count, [3, 1])
    np.testing.assert_allclose(bins.edges, [0.0, 0.6, 1.0])


def test_quantile_bins_hold_equal_mass_without_ties():
    probs, labels = random_predictions(1000, 4, seed=1)
    bins = reliability_bins(probs, labels, n_bins=8, strategy="quantile")
    np.testing.assert_array_equal(bins.count, [125] * 8)
    # Inner edges are observed confidences (inverted CDF), not interpolated ones.
    confidences = [[0.5, 0.5], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2]]
    np.testing.assert_allclose(reliability_bins(confidences, [0, 0, 0, 0], 2, "quantile").edges, [0, 0.6, 1])


def test_reliability_bins_by_hand():
    bins = reliability_bins(PROBS, LABELS, n_bins=4)
    np.testing.assert_allclose(bins.edges, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(bins.count, [0, 1, 3, 0])
    np.testing.assert_allclose(bins.confidence, [np.nan, 0.5, 1.9 / 3, np.nan])
    np.testing.assert_allclose(bins.accuracy, [np.nan, 0.0, 2 / 3, np.nan])


def test_classwise_ece_by_hand():
    # Bins (0, .5], (.5, 1]; per class |#labelled k - summed p_k| in each bin:
    #   class 0: p = .7 .1 .2 .5, y=k 1 0 0 0: bin 0 |0 - .8| + bin 1 |1 - .7| = 1.1
    #   class 1: p = .2 .6 .2 .4, y=k 0 0 0 1: bin 0 |1 - .8| + bin 1 |0 - .6| = .8
    #   class 2: p = .1 .3 .6 .1, y=k 0 1 1 0: bin 0 |1 - .5| + bin 1 |1 - .6| = .9
    assert classwise_ece(PROBS, LABELS, n_bins=2) == pytest.approx((1.1 + 0.8 + 0.9) / (4 * 3))


def test_aurc_by_hand_spreads_errors_over_ties():
    # By confidence: .7 right, then a tie at .6 (one right, one wrong), then .5 wrong.
    # Errors among the k most confident: 0, 1/2 (expected over the tie's order), 1, 2.
    expected = (0 / 1 + 0.5 / 2 + 1 / 3 + 2 / 4) / 4  # 13/48
    assert aurc(PROBS, LABELS) == pytest.approx(expected)
    assert aurc(PROBS[[0, 2, 1, 3]], LABELS[[0, 2, 1, 3]]) == pytest.approx(expected)


def test_aurc_matches_the_definition_without_ties():
    probs, labels = random_predictions(500, 5, seed=2)
    order = np.argsort(-probs.max(axis=1))
    errors = probs.argmax(axis=1)[order] != labels[order]
    expected = np.mean(np.cumsum(errors) / np.arange(1, 501))
    assert aurc(probs, labels) == pytest.approx(expected)


def test_aurc_extremes():
    assert aurc(PROBS, PROBS.argmax(axis=1)) == 0.0
    assert aurc(PROBS, (PROBS.argmax(axis=1) + 1) % 3) == pytest.approx(1.0)


# -- edge cases ------------------------------------------------------------------------


def test_confidence_of_exactly_one_falls_in_the_last_bin():
    probs, labels = np.array([[1.0, 0.0], [0.6, 0.4]]), np.array([0, 1])
    bins = reliability_bins(probs, labels, n_bins=4)
    np.testing.assert_array_equal(bins.count, [0, 0, 1, 1])
    assert ece(probs, labels, n_bins=4) == pytest.approx((0 + 0.6) / 2)


def test_extreme_probabilities_in_classwise_ece():
    # p = 1 goes in the last bin and p = 0 in the first: both gaps are 1.
    assert classwise_ece([[1.0, 0.0]], [1]) == pytest.approx(1.0)
    assert classwise_ece([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0
    assert ece([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0


def naive_classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Reference: one mask per class and bin, straight from the definition."""
    edges = np.linspace(0, 1, n_bins + 1)
    n, n_classes = probs.shape
    total = 0.0
    for k in range(n_classes):
        p, is_k = probs[:, k].astype(np.float64), labels == k
        for b in range(n_bins):
            in_bin = (p <= edges[1]) if b == 0 else (p > edges[b]) & (p <= edges[b + 1])
            total += abs(is_k[in_bin].sum() - p[in_bin].sum())
    return total / (n * n_classes)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classwise_ece_matches_the_definition(dtype):
    probs, labels = random_predictions(400, 30, seed=3)
    edge = np.linspace(0, 1, 16)[1]  # entries exactly on the first bin edge belong to bin 0
    probs[:5] = 0.0
    probs[:5, 0], probs[:5, 1] = edge, 1 - edge
    probs = probs.astype(dtype)
    assert classwise_ece(probs, labels) == pytest.approx(naive_classwise_ece(probs, labels, 15), abs=1e-9)


def test_two_classes_work():
    probs, labels = random_predictions(300, 2, seed=4)
    values = compute_all(probs, labels)
    assert values["accuracy"].value == pytest.approx(accuracy_score(labels, probs.argmax(axis=1)))
    assert 0.5 <= values["mean_confidence"].value <= 1
    assert all(np.isfinite(v.value) for v in values.values())


def test_float16_probabilities_pass_validation():
    probs, labels = random_predictions(2000, 150, seed=5)
    half = probs.astype(np.float16)
    assert accuracy(half, labels) == pytest.approx(accuracy(probs, labels), abs=2e-3)
    assert ece(half, labels) == pytest.approx(ece(probs, labels), abs=1e-3)


def test_torch_tensors_are_accepted():
    probs, labels = random_predictions(100, 3, seed=6)
    assert ece(torch.tensor(probs), torch.tensor(labels)) == ece(probs, labels)


# -- scikit-learn ----------------------------------------------------------------------


def test_against_sklearn():
    probs, labels = random_predictions(1000, 6, seed=7)
    predicted = probs.argmax(axis=1)
    assert accuracy(probs, labels) == pytest.approx(accuracy_score(labels, predicted))
    assert macro_f1(probs, labels) == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert nll(probs, labels) == pytest.approx(log_loss(labels, probs, labels=range(6)))


def test_macro_f1_skips_classes_absent_from_labels_and_predictions_like_sklearn():
    probs, labels = random_predictions(200, 4, seed=8)
    probs = np.hstack([probs * 0.99, np.full((200, 1), 0.01)])  # class 4: never predicted nor a label
    predicted = probs.argmax(axis=1)
    assert macro_f1(probs, labels) == pytest.approx(f1_score(labels, predicted, average="macro"))


def test_binary_brier_is_twice_sklearns():
    probs, labels = random_predictions(500, 2, seed=9)
    assert brier(probs, labels) == pytest.approx(2 * brier_score_loss(labels, probs[:, 1]))


def test_ood_auroc_against_sklearn_with_ties():
    rng = np.random.default_rng(10)
    inside, outside = np.round(rng.normal(1, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)
    is_inside = np.r_[np.ones(300), np.zeros(200)]  # in-distribution is the positive class
    expected = roc_auc_score(is_inside, np.r_[inside, outside])
    assert ood_auroc(inside, outside) == pytest.approx(expected)
    assert ood_auroc([2.0, 3.0], [1.0]) == 1.0
    assert ood_auroc([1.0], [1.0]) == 0.5


# -- specs and compute_all -------------------------------------------------------------


def test_compute_all_keys_every_value_by_its_spec_id():
    values = compute_all(PROBS, LABELS)
    assert list(values) == [spec.id for spec in STANDARD_SPECS]
    assert all(isinstance(v, MetricValue) and v.id == key for key, v in values.items())
    assert values["ece/uniform/15/l1"].value == ece(PROBS, LABELS)
    assert values["mce/uniform/15/max"].value == mce(PROBS, LABELS)
    assert values["classwise_ece/uniform/15/l1"].value == classwise_ece(PROBS, LABELS)
    stored = {"id": "brier", "value": brier(PROBS, LABELS), "spec": MetricSpec("brier").to_dict()}
    assert values["brier"].to_dict() == stored


def test_every_standard_spec_is_registered():
    assert {spec.name for spec in STANDARD_SPECS} <= set(METRICS.names())


@pytest.mark.parametrize(
    "spec, message",
    [
        (MetricSpec("ece", "uniform", 15, "max"), "norm 'l1'"),
        (MetricSpec("ece", "equal", 15, "l1"), "unknown binning strategy"),
        (MetricSpec("ece", "uniform", 0, "l1"), "n_bins must be an integer >= 1"),
        (MetricSpec("classwise_ece", "quantile", 15, "l1"), "uniform bins"),
    ],
)
def test_bad_specs_raise(spec, message):
    with pytest.raises(ValueError, match=message):
        compute_all(PROBS, LABELS, [spec])


# -- bad input -------------------------------------------------------------------------


def _with(row: int, col: int, value: float) -> np.ndarray:
    probs = PROBS.copy()
    probs[row, col] = value
    return probs


@pytest.mark.parametrize(
    "probs, labels, message",
    [
        (PROBS[0], LABELS, r"shape \(n, C\)"),
        (PROBS[:, :1], LABELS, r"C >= 2"),
        (np.empty((0, 3)), np.empty(0, dtype=int), r"n >= 1"),
        (PROBS.astype(int), LABELS, "floating point"),
        (PROBS, LABELS[:3], r"labels must have shape \(4,\)"),
        (PROBS, LABELS.astype(float), "labels must be integers"),
        (PROBS, [0, 1, 2, 3], r"labels must be in \[0, 3\)"),
        (PROBS, [0, -1, 2, 1], r"labels must be in \[0, 3\)"),
        (_with(1, 1, np.nan), LABELS, "NaN or infinity .*row 1"),
        (_with(2, 0, np.inf), LABELS, "NaN or infinity .*row 2"),
        (np.array([[1.2, -0.2], [0.5, 0.5]]), [0, 1], r"in \[0, 1\]"),
        (_with(3, 0, 0.4), LABELS, "row 3 sums to 0.9"),
    ],
)
def test_bad_input_raises_value_error(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        ece(probs, labels)


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ood_auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        ood_auroc([np.nan], [1.0])


# -- bootstrap -------------------------------------------------------------------------

ECE = MetricSpec("ece", "uniform", 15, "l1")


def test_bootstrap_is_seeded_and_contains_the_estimate():
    probs, labels = random_predictions(500, 4, seed=11)
    first = bootstrap_interval(ECE, probs, labels, seed=0, n_resamples=200)
    assert first == bootstrap_interval(ECE, probs, labels, seed=0, n_resamples=200)
    assert first != bootstrap_interval(ECE, probs, labels, seed=1, n_resamples=200)
    assert first.estimate == MetricValue(ece(probs, labels), ECE)
    assert first.low < first.estimate.value < first.high


def test_bootstrap_over_seeds_averages_seeds():
    stacked = [random_predictions(300, 3, seed=s) for s in (12, 13, 14)]
    labels = stacked[0][1]
    probs = np.stack([p for p, _ in stacked])
    interval = bootstrap_interval(MetricSpec("nll"), probs, labels, seed=0, n_resamples=100)
    assert interval.estimate.value == pytest.approx(np.mean([nll(p, labels) for p in probs]))
    assert interval.low < interval.estimate.value < interval.high


def test_paired_bootstrap_of_a_method_against_itself():
    probs, labels = random_predictions(300, 3, seed=15)
    result = paired_bootstrap(ECE, probs, probs, labels, seed=0, n_resamples=100)
    assert (result.difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_finds_a_real_difference_over_seeds_and_examples():
    rng = np.random.default_rng(16)
    n, n_classes = 400, 3
    labels = rng.integers(0, n_classes, n)
    one_hot = np.eye(n_classes)[labels]
    good = np.stack([0.7 * one_hot + 0.3 * rng.dirichlet(np.ones(n_classes), n) for _ in range(3)])
    bad = np.stack([0.2 * one_hot + 0.8 * rng.dirichlet(np.ones(n_classes), n) for _ in range(3)])
    result = paired_bootstrap(MetricSpec("brier"), good, bad, labels, seed=0, n_resamples=200)
    assert result.difference == pytest.approx(
        np.mean([brier(g, labels) - brier(b, labels) for g, b in zip(good, bad, strict=True)])
    )
    assert result.low <= result.difference <= result.high < 0
    assert result.p_value < 0.05
    assert result == paired_bootstrap(MetricSpec("brier"), good, bad, labels, seed=0, n_resamples=200)


def test_paired_bootstrap_needs_matching_seeds():
    probs, labels = random_predictions(50, 3, seed=17)
    with pytest.raises(ValueError, match="same number of seeds"):
        paired_bootstrap(ECE, np.stack([probs, probs]), probs, labels, seed=0)


WEIGHTED_SPECS = [s for s in STANDARD_SPECS if s.name in WEIGHTED and WEIGHTED.get(s.name).fits(s)] + [MetricSpec("debiased_ce", "uniform", 15, "l2sq")]


@pytest.mark.parametrize("spec", WEIGHTED_SPECS, ids=str)
def test_weighted_forms_equal_the_metric_on_each_resample(spec):
    probs, labels = random_predictions(120, 4, seed=19)
    preds = Predictions.of(probs, labels)
    rng = np.random.default_rng(1)
    draws = [rng.integers(0, 120, 120) for _ in range(5)] + [np.arange(7)]  # the last: most rows drawn 0 times
    counts = np.stack([np.bincount(rows, minlength=120) for rows in draws]).astype(np.float64)
    expected = [METRICS.get(spec.name)(Predictions.of(probs[rows], labels[rows]), spec) for rows in draws]
    np.testing.assert_allclose(WEIGHTED.get(spec.name)(preds, spec, counts), expected, rtol=1e-12, atol=1e-12)


def test_quantile_ece_has_no_weighted_form_but_bootstraps():
    quantile = MetricSpec("ece", "quantile", 15, "l1")
    assert not WEIGHTED.get("ece").fits(quantile)
    probs, labels = random_predictions(200, 3, seed=20)
    interval = bootstrap_interval(quantile, probs, labels, seed=0, n_resamples=50)
    assert interval.low < interval.estimate.value < interval.high


def test_group_bootstrap_draws_copies_of_an_example_together():
    probs, labels = random_predictions(150, 3, seed=21)
    copies, group = np.tile(probs, (4, 1)), np.tile(np.arange(150), 4)  # 4 exact copies of every example
    alone = bootstrap_interval(ECE, probs, labels, seed=3, n_resamples=300)
    grouped = bootstrap_interval(ECE, copies, labels[group], seed=3, n_resamples=300, groups=group)
    naive = bootstrap_interval(ECE, copies, labels[group], seed=3, n_resamples=300)
    assert (grouped.low, grouped.high) == pytest.approx((alone.low, alone.high), abs=1e-12)
    assert naive.high - naive.low < 0.7 * (alone.high - alone.low)  # copies taken as independent: too narrow
    with pytest.raises(ValueError, match="groups must have shape"):
        bootstrap_interval(ECE, probs, labels, seed=0, groups=np.arange(10))


@pytest.mark.parametrize("seed", [None, -1, 1.5])
def test_bootstrap_needs_an_explicit_seed(seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        bootstrap_interval(ECE, PROBS, LABELS, seed=seed, n_resamples=10)


def test_predictions_take_matches_fresh_validation():
    probs, labels = random_predictions(100, 5, seed=18)
    rows = np.random.default_rng(0).integers(0, 100, 100)
    taken, fresh = Predictions.of(probs, labels).take(rows), Predictions.of(probs[rows], labels[rows])
    for name in ("probs", "labels", "predicted", "confidence", "true_prob", "correct", "sq_norm"):
        np.testing.assert_array_equal(getattr(taken, name), getattr(fresh, name))


# -- debiased calibration error, smooth ECE, tie groups, floors -------------------------

DEBIASED = MetricSpec("debiased_ce", "quantile", 15, "l2sq")
SMOOTH = MetricSpec("smooth_ece")


def reference_sample(seed: int, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Underconfident predictions (labels drawn from the probabilities sharpened by a power 1.3).
    The golden values below were computed on exactly these arrays by the reference packages."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n_classes)) * 2
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    truth = p**1.3 / (p**1.3).sum(axis=1, keepdims=True)
    u = rng.random(n)
    return p, np.minimum((u[:, None] > np.cumsum(truth, axis=1)).sum(axis=1), n_classes - 1)


# (seed, n, C) -> Kumar et al.'s ``calibration`` 0.1.4: unbiased_square_ce on get_equal_bins(top
# confidences, 15) (= lower_bound_scaling_top_ce(p=2, debias=True, num_bins=15) squared when positive),
# and relplot 1.0.3's smECE(top confidence, correct).
REFERENCE = {
    (7, 300, 3): (0.0007444613228398723, 0.05449015411789),
    (8, 600, 5): (0.006194529084943534, 0.06125264108572508),
    (9, 150, 2): (0.0006048748681175407, 0.03801456082855843),
}


def test_new_metric_ids_round_trip_through_specs():
    for spec in (DEBIASED, SMOOTH):
        assert MetricSpec.from_id(spec.id) == spec and spec in STANDARD_SPECS
    assert (DEBIASED.id, SMOOTH.id) == ("debiased_ce/quantile/15/l2sq", "smooth_ece")


def test_debiased_ce_by_hand():
    # 2 equal-mass bins of PROBS's confidences [0.7, 0.6, 0.6, 0.5]: the inner edge is the median 0.6,
    # so (0, 0.6] holds rows 1, 2, 3 (conf 1.7/3, acc 1/3) and (0.6, 1] row 0 alone (n_b < 2: 0).
    value = compute_all(PROBS, LABELS, [MetricSpec("debiased_ce", "quantile", 2, "l2sq")])["debiased_ce/quantile/2/l2sq"].value
    assert value == pytest.approx(3 / 4 * ((1 / 3 - 1.7 / 3) ** 2 - (1 / 3) * (2 / 3) / 2), abs=1e-15)
    assert value == pytest.approx(-0.0425, abs=1e-15)  # unclipped: the unbiased estimate may be negative


@pytest.mark.parametrize("key", REFERENCE, ids=str)
def test_debiased_ce_and_smooth_ece_match_the_reference_packages(key):
    probs, labels = reference_sample(*key)
    values = compute_all(probs, labels, [DEBIASED, SMOOTH])
    kumar, relplot_value = REFERENCE[key]
    assert values[DEBIASED.id].value == pytest.approx(kumar, rel=1e-9)
    # relplot bisects the bandwidth to 2^-10 and integrates on 200 points; ours is finer
    assert values[SMOOTH.id].value == pytest.approx(relplot_value, abs=1e-3)


def test_smooth_ece_by_hand():
    from cud_bench.metrics import smooth_ece_at

    # residuals of one sign: the smoothed residual integrates to mean |r| at every bandwidth
    assert smooth_ece_at(np.array([0.9, 0.8, 0.7]), np.zeros(3), None) == pytest.approx(0.8, abs=1e-9)
    assert smooth_ece_at(np.array([0.9, 0.8, 0.7]), np.zeros(3), 0.05) == pytest.approx(0.8, abs=1e-9)
    # +0.4 and -0.6 at the same confidence cancel to -0.2 over 2 examples
    assert smooth_ece_at(np.array([0.6, 0.6]), np.array([True, False]), None) == pytest.approx(0.1, abs=1e-9)
    # far-apart residuals of opposite signs barely overlap at a small bandwidth
    assert smooth_ece_at(np.array([0.0, 1.0]), np.array([True, False]), 0.05) == pytest.approx(1.0, abs=1e-9)
    # a perfectly sharp, always right model
    assert compute_all(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), [SMOOTH])[SMOOTH.id].value == pytest.approx(0.0, abs=1e-9)


def test_smooth_ece_fixed_point_is_its_own_bandwidth():
    from cud_bench.metrics import smooth_ece_at

    probs, labels = reference_sample(8, 600, 5)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    sigma = smooth_ece_at(confidence, correct, None)
    assert smooth_ece_at(confidence, correct, sigma) == pytest.approx(sigma, abs=1e-9)
    assert smooth_ece_at(confidence, correct, sigma / 2) > sigma > smooth_ece_at(confidence, correct, 2 * sigma)


def test_the_bandwidth_root_search_brackets_known_roots_as_bisection_does():
    from cud_bench.metrics import SMOOTH_TOLERANCE, _decreasing_root

    # decreasing functions with known roots: steep, flat, curved, kinked, a root at 0 and a linear one
    roots = np.array([0.3, 1e-3, 0.75, 0.5, 0.0, 0.2, 0.999])
    shapes = [
        lambda x, r: 50 * (r - x),
        lambda x, r: 1e-3 * (r - x),
        lambda x, r: np.cbrt(r - x),
        lambda x, r: np.where(x < r, 10 * (r - x), r - x),
        lambda x, r: -x,
        lambda x, r: np.exp(-5 * x) - np.exp(-5 * r),
        lambda x, r: (r - x) ** 3,
    ]
    evaluated = []

    def g(x, rows):
        evaluated.append(len(rows))
        return np.array([shapes[i](xi, roots[i]) for xi, i in zip(x, rows)], dtype=np.float64)

    found = _decreasing_root(g, len(roots))
    assert np.abs(found - roots).max() <= SMOOTH_TOLERANCE / 2
    assert len(evaluated) <= 2 + 4 * 40  # the bisection fallback's bound (the flat cubic needs ~130)


def test_the_smooth_ece_bandwidth_takes_fewer_evaluations_than_bisection(monkeypatch):
    from cud_bench import metrics

    probs, labels = reference_sample(8, 600, 5)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    rng = np.random.default_rng(0)
    counts = rng.multinomial(600, np.full(600, 1 / 600), size=50)  # bootstrap resamples, as intervals use
    residuals = counts * (correct - confidence) * (600 / counts.sum(1, keepdims=True))
    evaluations = []
    search = metrics._decreasing_root

    def counted(g, d):
        return search(lambda x, rows: evaluations.append(len(rows)) or g(x, rows), d)

    monkeypatch.setattr(metrics, "_decreasing_root", counted)
    found = metrics._smooth_ece(confidence, residuals, None)
    assert len(evaluations) <= 20  # bisection: 40 of all 50 rows
    # each is a fixed point to within the tolerance
    for k in range(0, 50, 7):
        value = metrics._smooth_ece(confidence, residuals[k : k + 1], found[k])[0]
        assert abs(value - found[k]) < 1e-9


def test_smooth_ece_of_several_sets_at_once_is_each_sets_own():
    from cud_bench.metrics import smooth_ece_at, smooth_ece_of_sets

    # sets of different sizes and calibration: one root search must not mix their bandwidths
    sets = [reference_sample(seed, n, 5) for seed, n in ((1, 600), (2, 40), (3, 300), (4, 7))]
    confidences = [p.max(1) ** power for (p, _), power in zip(sets, (1.0, 0.5, 3.0, 1.0))]
    corrects = [p.argmax(1) == y for p, y in sets]
    alone = [smooth_ece_at(c, k, None) for c, k in zip(confidences, corrects)]
    together = smooth_ece_of_sets(confidences, corrects)
    assert len(set(np.round(alone, 6))) == 4  # the sets differ, so a mix-up would show
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)
    assert smooth_ece_of_sets([], []).shape == (0,)


def test_ties_are_groups_within_a_relative_tolerance():
    from cud_bench.metrics import tie_representatives

    values = np.array([0.5, 0.5 * (1 + 1e-12), 0.3, 0.5 * (1 - 3e-16), 0.5 + 1e-6, 0.0, 1e-13])
    np.testing.assert_array_equal(tie_representatives(values), [0.5 * (1 + 1e-12)] * 2 + [0.3, 0.5 * (1 + 1e-12), 0.5 + 1e-6, 1e-13, 1e-13])


def test_a_tie_group_is_never_split_by_a_quantile_edge():
    # 9 confidences within last-bit noise of 0.6 and 6 others: 3 quantile bins
    base = np.r_[np.full(9, 0.6), np.linspace(0.7, 0.95, 6)]
    noisy = base + np.r_[np.arange(-4, 5), np.zeros(6)] * np.spacing(0.6)
    probs = lambda c: np.stack([c, 1 - c], axis=1)  # noqa: E731
    labels = np.r_[np.zeros(4, int), np.ones(5, int), np.zeros(6, int)]
    bins = reliability_bins(probs(noisy), labels, n_bins=3, strategy="quantile")
    assert list(bins.count) == [9, 1, 5]  # edges at the 5th (the 0.6 group) and 10th (0.7) smallest
    assert ece(probs(noisy), labels, 3, "quantile") == pytest.approx(ece(probs(base), labels, 3, "quantile"), abs=1e-12)
    assert aurc(probs(noisy), labels) == pytest.approx(aurc(probs(base), labels), abs=1e-12)


def _calibrated_binary(n: int, seed: int) -> np.ndarray:
    """A binary model whose confidence is uniform on [0.5, 1]."""
    confidence = np.random.default_rng(seed).uniform(0.5, 1.0, n)
    return np.stack([confidence, 1 - confidence], axis=1)


def test_ece_floor_at_the_issues_sizes():
    from cud_bench.metrics import floor

    # Per occupied bin (7.5 of 15 bins hold confidences in [0.5, 1]) the sampling error of the
    # hits is ~ sqrt(2/pi * n_b * p(1-p)), p(1-p) ~ 1/6 on average: ECE ~ 7.5 * that / n,
    # i.e. ~0.17 at n = 30 (n_b = 4) and ~0.04 at n = 500 (n_b = 67).
    small = floor(ECE, _calibrated_binary(30, 0), seed=0)
    large = floor(ECE, _calibrated_binary(500, 0), seed=0)
    assert 0.12 < small.mean < 0.22 and 0.03 < large.mean < 0.05
    assert small.quantile > small.mean and small.level == 0.95 and small.n_draws == 200
    assert floor(ECE, _calibrated_binary(30, 0), seed=0) == small  # seeded
    assert floor(ECE, _calibrated_binary(30, 0), seed=1) != small


def test_the_vectorised_floor_equals_scoring_each_draw():
    from cud_bench.metrics import floor

    probs = _calibrated_binary(200, 3)  # class 0 is predicted: label 0 exactly when the draw is < confidence
    draws = np.random.default_rng(5).random((40, 200))
    for spec in (ECE, MetricSpec("mce", "uniform", 15, "max"), DEBIASED):
        values = [compute_all(probs, (d >= probs[:, 0]).astype(int), [spec])[spec.id].value for d in draws]
        result = floor(spec, probs, n_draws=40, seed=5)
        assert result.mean == pytest.approx(np.mean(values), abs=1e-12)
        assert result.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def test_debiased_floor_is_near_zero_and_a_miscalibrated_model_is_above_its_floor():
    from cud_bench.metrics import floor

    probs = _calibrated_binary(500, 1)
    debiased, plain = floor(DEBIASED, probs, seed=0), floor(MetricSpec("ece", "quantile", 15, "l1"), probs, seed=0)
    # the squared error is ~1e-3 per bin (variance p(1-p)/n_b); its unbiased estimate averages 0
    assert abs(debiased.mean) < 3e-4 < plain.mean**2
    overconfident = np.random.default_rng(2).random(500) < probs[:, 0] - 0.15
    labels = (~overconfident).astype(int)
    assert ece(probs, labels) > floor(ECE, probs, seed=0).quantile
    smooth = floor(SMOOTH, probs, seed=0, n_draws=50)
    assert 0 < smooth.mean < smooth.quantile < compute_all(probs, labels, [SMOOTH])[SMOOTH.id].value


def test_a_floor_draw_by_draw_for_classwise_ece_and_only_for_calibration_errors():
    from cud_bench.metrics import floor

    probs, _ = random_predictions(300, 4, seed=3)
    result = floor(MetricSpec("classwise_ece", "uniform", 15, "l1"), probs, seed=1, n_draws=30)
    assert 0 < result.mean < 0.1 and result.n_draws == 30
    with pytest.raises(ValueError, match="calibration errors"):
        floor(MetricSpec("accuracy"), probs, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        floor(ECE, probs, seed=None)
