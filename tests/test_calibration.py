"""Temperature scaling: fitted T minimises validation NLL, refuses test data, is deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cud_bench.calibration import apply_temperature, fit_temperature, fit_temperatures


def nll(logits: np.ndarray, labels: np.ndarray, T: float) -> float:
    """Reference mean NLL of softmax(logits / T), written out independently of the code under test."""
    z = logits / T
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))


def synthetic(seed: int, n: int = 3000, c: int = 5, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits): perfectly calibrated at T = 1 for scale = 1.

    Multiplying the logits by ``scale`` > 1 makes them over-confident (best T ~ scale), < 1 under-confident.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(c, p=row) for row in probs])
    return logits * scale, labels


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_fitted_temperature_recovers_the_true_one_and_minimises_nll(scale):
    logits, labels = synthetic(seed=1, scale=scale)
    T = fit_temperature(logits, labels)
    assert T == pytest.approx(scale, rel=0.1)
    for other in (T * 1.1, T / 1.1, T * 1.001, T / 1.001):
        assert nll(logits, labels, T) <= nll(logits, labels, other)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 400))
    assert nll(logits, labels, T) <= min(nll(logits, labels, t) for t in grid) + 1e-9


def test_over_confident_teacher_gets_t_above_one():
    # 70% accurate, but every prediction has a margin of 8 logits (confidence ~ 0.999)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=1000)
    predicted = np.where(rng.random(1000) < 0.7, labels, rng.integers(0, 4, size=1000))
    logits = 8.0 * np.eye(4)[predicted] + rng.normal(scale=0.1, size=(1000, 4))
    assert fit_temperature(logits, labels) > 2.0


def test_fit_is_deterministic_and_accepts_tensors():
    logits, labels = synthetic(seed=3, n=500, scale=2.0)
    first = fit_temperature(logits, labels, split="validation")
    assert fit_temperature(logits, labels) == first
    assert fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels)) == first


def test_lockstep_fits_equal_one_fit_per_model_bit_for_bit():
    # Models of different confidence (T from ~0.3 to ~30, one at a bound) and class counts, float32
    # logits as a stack's validation pass gives them: the searches end after different numbers of steps.
    for seed, c in ((4, 2), (5, 7)):
        logits, labels = synthetic(seed=seed, n=400, c=c)
        stack = np.stack([logits * s for s in (0.3, 1.0, 4.0, 30.0, 1e-4)]).astype(np.float32)
        assert fit_temperatures(stack, labels) == [fit_temperature(z, labels) for z in stack]
    with pytest.raises(ValueError, match="validation data"):
        fit_temperatures(stack, labels, split="test")
    with pytest.raises(ValueError, match=r"\(M, n, C\)"):
        fit_temperatures(stack[0], labels)


@pytest.mark.parametrize("split", ["test", "TEST", "test/typo"])
def test_fitting_on_test_data_is_refused(split):
    logits, labels = synthetic(seed=4, n=50)
    with pytest.raises(ValueError, match="refusing"):
        fit_temperature(logits, labels, split=split)


def test_bad_fit_input_is_refused():
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, C\)"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.array([[0.0, np.nan]]), np.array([0]))


def test_apply_temperature_golden():
    probs = apply_temperature(np.array([[2.0, 0.0], [0.0, 0.0]]), 2.0)
    e = math.exp(1.0)  # softmax([1, 0])
    np.testing.assert_allclose(probs, [[e / (e + 1), 1 / (e + 1)], [0.5, 0.5]], rtol=1e-15)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(apply_temperature(torch.tensor([[1000.0, 0.0]]), 1.0), [[1.0, 0.0]])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            apply_temperature(np.zeros((1, 2)), bad)
