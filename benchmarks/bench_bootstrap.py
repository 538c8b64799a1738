"""A paired bootstrap of ECE (3 seeds x 1,500 examples, 1,000 resamples), the leaderboard's
unit of work; target: >= 5x faster than scoring each resample in turn.

Ours holds a replicate as example counts and scores all of them with a few matrix
products (``cud_bench.metrics.WEIGHTED``); the baseline, measured in the same run,
draws the same resamples and computes ECE on each (what the views did before).
Run with ``pytest benchmarks/bench_bootstrap.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench.metrics import METRICS, Predictions, paired_bootstrap
from cud_bench.specs import MetricSpec

SEEDS, N, C, R = 3, 1500, 4, 1000
ECE = MetricSpec("ece", "uniform", 15, "l1")
GROUP = "paired bootstrap ECE 3x1500, 1000 resamples"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N)

    def method(sharpness: float) -> np.ndarray:
        logits = rng.normal(size=(SEEDS, N, C))
        logits[:, np.arange(N), labels] += 1.0
        p = np.exp(sharpness * logits)
        return p / p.sum(-1, keepdims=True)

    return method(1.0), method(2.0), labels


def loop_paired_bootstrap(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    """Baseline: the same draws as ours, ECE scored on each resample of each seed of each method."""
    metric = METRICS.get("ece")
    preds = [[Predictions.of(p, labels) for p in probs] for probs in (a, b)]
    rng = np.random.default_rng(0)
    differences = np.empty(R)
    for r in range(R):
        weights = np.bincount(rng.integers(0, SEEDS, SEEDS), minlength=SEEDS) / SEEDS
        rows = rng.integers(0, N, N)
        values = [sum(w * metric(p[s].take(rows), ECE) for s, w in enumerate(weights) if w) for p in preds]
        differences[r] = values[0] - values[1]
    return float(np.quantile(differences, 0.975))


@pytest.mark.benchmark(group=GROUP)
def test_baseline_scoring_each_resample(benchmark, data):
    high = benchmark.pedantic(loop_paired_bootstrap, args=data, rounds=2, iterations=1)
    assert high == pytest.approx(paired_bootstrap(ECE, *data, seed=0, n_resamples=R).high, abs=1e-9)


@pytest.mark.benchmark(group=GROUP)
def test_weighted_replicates(benchmark, data):
    result = benchmark.pedantic(lambda: paired_bootstrap(ECE, *data, seed=0, n_resamples=R), rounds=3, iterations=1)
    assert result.low <= result.difference <= result.high
