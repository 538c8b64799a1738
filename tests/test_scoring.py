"""Scores that do not depend on the machine: computed from the stored float16 probabilities,
temperature-scaled reproducibly, and with tie-robust metric definitions.

A stored score must not move by more than 1e-6 when a probability changes in its last
bits (as numpy's SIMD code paths make it on another CPU), when the examples come in
another order, or when rows are duplicated; constant predictors are the worst case.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from cud_bench import calibration, metrics
from cud_bench.scoring import _entropy, floors, ood_scores, scores, stored_probs

TOLERANCE = 1e-6


def _stored_set(seed: int, n_distinct: int = 60, n_classes: int = 4, copies: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """float16 probabilities with every row repeated ``copies`` times (duplicate texts), in shuffled order."""
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.standard_normal((n_distinct, n_classes))
    probs = np.repeat(stored_probs(logits), copies, axis=0)
    labels = rng.integers(0, n_classes, len(probs))
    order = rng.permutation(len(probs))
    return probs[order], labels[order]


def _constant_set(n: int = 90, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One row for every example (a degenerate, constant predictor)."""
    rng = np.random.default_rng(seed)
    probs = np.tile(stored_probs(np.array([[1.2, 0.3, -0.4]])), (n, 1))
    return probs, rng.integers(0, 3, n)


def _nudged(probs: np.ndarray, seed: int, ulps: int = 4) -> np.ndarray:
    """float64 probabilities moved by up to ``ulps`` units in the last place, independently per entry."""
    rng = np.random.default_rng(seed)
    return probs + rng.integers(-ulps, ulps + 1, probs.shape) * np.spacing(probs)


def _close(a: dict[str, float], b: dict[str, float]) -> list[str]:
    assert a.keys() == b.keys()
    return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if abs(a[k] - b[k]) > TOLERANCE]


def _values(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {k: v.value for k, v in metrics.compute_all(probs, labels).items()}


def _on_an_edge_set(n: int = 60, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """float16 [0.8, 0.2] (0.7998 = 4 x 0.19995 exactly): normalised, the confidence is the bin edge 12/15."""
    probs = np.tile(np.array([[0.8, 0.2]], dtype=np.float16), (n, 1))
    assert calibration.normalise_stored(probs)[0, 0] == np.linspace(0, 1, 16)[12]
    return probs, np.random.default_rng(seed).integers(0, 2, n)


SETS = {
    "duplicates": lambda: _stored_set(0),
    "two classes": lambda: _stored_set(2, n_classes=2),
    "constant": _constant_set,
    "on a bin edge": _on_an_edge_set,
}


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("variant", ["raw", "ts"])
def test_last_bit_changes_move_no_score_by_more_than_1e6(name, variant):
    """The probabilities metrics see (raw: the stored values; ts: after T = 1.7), moved by a few
    float64 ulps per entry, as another machine's SIMD power/sum would move them."""
    probs16, labels = SETS[name]()
    probs = calibration.variant_probs(probs16, 1.7, variant)
    reference = _values(probs, labels)
    for seed in range(5):
        assert not _close(_values(_nudged(probs, seed), labels), reference), (name, variant, seed)


@pytest.mark.parametrize("name", SETS)
def test_last_bit_changes_move_no_ood_auroc_by_more_than_1e6(name):
    probs16, _ = SETS[name]()
    inside, outside = probs16[: len(probs16) // 2], probs16[len(probs16) // 2 :]
    for variant in ("raw", "ts"):
        p_in, p_out = (calibration.variant_probs(p, 1.7, variant) for p in (inside, outside))
        for score in (lambda p: p.max(1), lambda p: -_entropy(p)):
            reference = metrics.ood_auroc(score(p_in), score(p_out))
            for seed in range(5):
                moved = metrics.ood_auroc(score(_nudged(p_in, seed)), score(_nudged(p_out, seed + 10)))
                assert abs(moved - reference) <= TOLERANCE, (name, variant, seed)


@pytest.mark.parametrize("name", SETS)
def test_scores_ignore_example_order_and_duplication(name):
    probs, labels = SETS[name]()
    reference = scores(probs, labels, 1.7)
    order = np.random.default_rng(5).permutation(len(probs))
    shuffled = scores(probs[order], labels[order], 1.7)
    doubled = scores(np.concatenate([probs, probs]), np.concatenate([labels, labels]), 1.7)
    for variant in ("raw", "ts"):
        assert not _close(shuffled[variant], reference[variant]), variant
        # every metric that is a function of the empirical distribution (AURC's coverages k/n are not)
        for metric in ("accuracy", "nll", "brier", "ece/uniform/15/l1", "ece/quantile/15/l1", "mean_confidence", "smooth_ece"):
            assert abs(doubled[variant][metric] - reference[variant][metric]) <= TOLERANCE, (variant, metric)


def test_temperature_scaling_of_stored_rows_is_bit_identical_for_equal_and_permuted_rows():
    probs, _ = _stored_set(3, n_distinct=20, n_classes=5, copies=3)
    permuted = np.array([row[np.random.default_rng(i).permutation(5)] for i, row in enumerate(probs)])
    scaled, scaled_permuted = calibration.scale_stored(probs, 0.6), calibration.scale_stored(permuted, 0.6)
    for i, row in enumerate(probs):
        same = np.flatnonzero((probs == row).all(axis=1))
        assert (scaled[same] == scaled[i]).all()  # bit-equal wherever the row appears
        assert sorted(scaled_permuted[i]) == sorted(scaled[i])  # and for any order of its classes
    assert (scaled.argmax(1) == probs.argmax(1)).all()


def test_stored_temperature_scaling_is_the_softmax_of_the_log_probabilities():
    probs = stored_probs(np.random.default_rng(4).standard_normal((50, 6)) * 3)
    for T in (0.3, 1.0, 2.5):
        expected = softmax(np.log(probs.astype(np.float64)) / T, axis=1)
        np.testing.assert_allclose(calibration.scale_stored(probs, T), expected, rtol=1e-13, atol=1e-300)
    with pytest.raises(ValueError, match="positive"):
        calibration.scale_stored(probs, 0.0)


def test_scores_are_computed_from_the_stored_values_normalised():
    probs, labels = _stored_set(6)
    result = scores(probs, labels, 1.3)
    raw = probs.astype(np.float64)
    assert np.abs(raw.sum(1) - 1).max() > 1e-5  # float16 rows do not sum to 1 ...
    normalised = raw / raw.sum(1, keepdims=True)  # ... so the raw scores renormalise them
    assert result["raw"]["nll"] == pytest.approx(-np.mean(np.log(normalised[np.arange(len(labels)), labels])), rel=1e-14)
    assert result["raw"]["mean_confidence"] == pytest.approx(normalised.max(1).mean(), rel=1e-14)
    np.testing.assert_array_equal(calibration.normalise_stored(probs), calibration.scale_stored(probs, 1.0))
    tempered = softmax(np.log(raw) / 1.3, axis=1)
    assert result["ts"]["nll"] == pytest.approx(-np.mean(np.log(tempered[np.arange(len(labels)), labels])), rel=1e-12)
    assert result["ts"]["accuracy"] == result["raw"]["accuracy"]
    assert (result["temperature"], result["n"]) == (1.3, len(labels))
    with pytest.raises(ValueError, match="stored float16"):
        scores(raw, labels, 1.3)


def test_ood_scores_from_stored_probabilities():
    inside, _ = _stored_set(7, n_classes=3)
    outside = stored_probs(np.random.default_rng(8).standard_normal((40, 3)) * 0.3)
    result = ood_scores(inside, outside, 2.0)
    p_in, p_out = calibration.normalise_stored(inside), calibration.normalise_stored(outside)
    entropy = lambda p: -(p * np.log(p)).sum(1)  # noqa: E731
    assert result["raw"]["ood_auroc/msp"] == metrics.ood_auroc(p_in.max(1), p_out.max(1))
    assert result["raw"]["ood_auroc/entropy"] == metrics.ood_auroc(-entropy(p_in), -entropy(p_out))
    assert result["ts"]["ood_mean_confidence"] == pytest.approx(softmax(np.log(p_out) / 2.0, axis=1).max(1).mean(), rel=1e-12)
    np.testing.assert_allclose(_entropy(p_in), entropy(p_in), rtol=1e-13)


def test_floors_of_stored_probabilities_per_variant():
    probs, _ = _stored_set(9, n_classes=3)
    result = floors(probs, 2.0, seed=0, n_draws=50)
    assert set(result) == {"raw", "ts"}
    assert set(result["raw"]) == {s.id for s in metrics.STANDARD_SPECS if s.name in metrics.CALIBRATION_METRICS}
    ece = "ece/uniform/15/l1"
    expected = metrics.floor(ece, calibration.scale_stored(probs, 2.0), seed=0, n_draws=50, predicted=probs.argmax(1))
    assert result["ts"][ece] == expected
    assert result["raw"][ece] != result["ts"][ece]
