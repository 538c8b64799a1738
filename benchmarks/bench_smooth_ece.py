"""The smooth-ECE bandwidth fixed point of bootstrap resamples: the bracketing root search
(``cud_bench.metrics._decreasing_root``) against 40-step bisection, the search it replaced.

Why it matters: scoring a cell computes the smooth ECE of every scored set (clean and about 60
shifted, raw and after TS) and of the bootstrap resamples and floor draws behind its intervals,
and each evaluation of the fixed point's function is a (D, 8192) inverse FFT. Before the change
the bisection was ~80% of a cell's scoring (py-spy, 5-seed ``cpu`` suite). Target: >= 2.5x.

Both search the same functions, 1,000 resamples of 500 examples (a test set of the ``cpu``
suite) in the chunks of 200 the metric uses, and must agree to within 2**-40 (asserted; each
brackets the fixed point to that width). Run with

    pytest benchmarks/bench_smooth_ece.py --benchmark-only -s
"""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench import metrics

N, RESAMPLES, CHUNK = 500, 1_000, 200
GROUP = "smooth ECE fixed point, 1,000 resamples of 500"
RESULTS: dict[str, np.ndarray] = {}
MEANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def resamples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, N)
    correct = rng.uniform(size=N) < confidence**1.5  # overconfident, as students are
    counts = rng.multinomial(N, np.full(N, 1 / N), size=RESAMPLES)
    residuals = counts * (correct - confidence) * (N / counts.sum(axis=1, keepdims=True))
    return confidence, residuals


def bisection(g, d: int) -> np.ndarray:
    """The baseline: 40 halvings of [0, 1] for every row, as ``metrics`` did before."""
    low, high, every = np.zeros(d), np.ones(d), np.arange(d)
    for _ in range(40):
        middle = (low + high) / 2
        above = g(middle, every) > 0
        low, high = np.where(above, middle, low), np.where(above, high, middle)
    return (low + high) / 2


def smooth_all(confidence: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    return np.concatenate([metrics._smooth_ece(confidence, residuals[i : i + CHUNK], None) for i in range(0, RESAMPLES, CHUNK)])


def run(benchmark, monkeypatch, key: str, search, resamples) -> None:
    monkeypatch.setattr(metrics, "_decreasing_root", search)
    RESULTS[key] = benchmark.pedantic(smooth_all, args=resamples, rounds=3, iterations=1, warmup_rounds=1)
    MEANS[key] = benchmark.stats.stats.mean


@pytest.mark.benchmark(group=GROUP)
def test_baseline_bisection(benchmark, monkeypatch, resamples):
    run(benchmark, monkeypatch, "bisection", bisection, resamples)


@pytest.mark.benchmark(group=GROUP)
def test_bracketing_search(benchmark, monkeypatch, resamples):
    run(benchmark, monkeypatch, "bracketing", metrics._decreasing_root, resamples)
    if "bisection" in RESULTS:
        assert np.abs(RESULTS["bracketing"] - RESULTS["bisection"]).max() <= 2.0**-40
        ratio = MEANS["bisection"] / MEANS["bracketing"]
        benchmark.extra_info["speedup_vs_bisection"] = round(ratio, 3)
        print(f"\nbracketing search / bisection throughput = {ratio:.3f}")
