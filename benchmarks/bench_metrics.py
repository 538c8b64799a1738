"""Metrics on 1,000,000 x 150 float32 probabilities; target: <= 1 s each on 2 cores.

Each of our metrics (input validation included) is timed next to two baselines
measured in the same run: a naive per-bin loop ECE (no validation) and
scikit-learn's ``log_loss``. Run with

    pytest benchmarks/bench_metrics.py --benchmark-columns=min,mean,max

On a machine shared with other jobs, add ``--benchmark-timer=time.process_time``:
the code is single-threaded, so CPU time is the wall time an idle machine would see.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss

from cud_bench.metrics import brier, classwise_ece, compute_all, ece, mce, nll

N, C = 1_000_000, 150
GROUP = "metrics 1e6x150"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    probs = rng.standard_normal((N, C), dtype=np.float32)
    probs *= 3
    probs -= probs.max(axis=1, keepdims=True)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.where(rng.random(N) < 0.5, probs.argmax(axis=1), rng.integers(0, C, N))
    return probs, labels


def naive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Baseline: the textbook loop, one mask per bin."""
    confidence = probs.max(axis=1).astype(np.float64)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return total


def run(benchmark, fn, *args, **kwargs):
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=3, iterations=1, warmup_rounds=0)


@pytest.mark.benchmark(group=GROUP)
def test_baseline_naive_loop_ece(benchmark, data):
    assert run(benchmark, naive_ece, *data) == pytest.approx(ece(*data), rel=1e-9)


@pytest.mark.benchmark(group=GROUP)
def test_baseline_sklearn_log_loss(benchmark, data):
    probs, labels = data
    # sklearn clips at float32 eps (1.2e-7), we at NLL_EPS (1e-12): close, not equal
    assert run(benchmark, log_loss, labels, probs, labels=np.arange(C)) == pytest.approx(nll(*data), rel=1e-2)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece(benchmark, data, strategy):
    assert 0 <= run(benchmark, ece, *data, strategy=strategy) <= 1


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("metric", [mce, classwise_ece, nll, brier], ids=lambda f: f.__name__)
def test_metric(benchmark, data, metric):
    assert np.isfinite(run(benchmark, metric, *data))


@pytest.mark.benchmark(group=GROUP)
def test_compute_all(benchmark, data):
    assert len(run(benchmark, compute_all, *data)) == 10
