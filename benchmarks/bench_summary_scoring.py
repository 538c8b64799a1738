"""Scoring one cell's summarised corrupted sets (50 sets of 300 texts, raw and after TS): all
sets together (``cud_bench.summaries.scores_of_sets``) against one set at a time, as a run and
a release's verification scored them before.

Why it matters: verifying release 2.0 (about 2,400 entries, twice in CI: numpy's default SIMD
paths and AVX-512 disabled) took 0.8 s an entry, two thirds of it the smooth ECE of these sets
found one at a time; a release that takes longer than CI's budget cannot be committed.
Target: >= 2x. Both must give the same scores (asserted). Run with

    pytest benchmarks/bench_summary_scoring.py --benchmark-only -s
"""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench import summaries
from cud_bench.scoring import stored_probs

SETS, N, CLASSES = 50, 300, 3
GROUP = "summaries of 50 corrupted sets of 300, raw and TS"
RESULTS: dict[str, list] = {}
MEANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def sets() -> list[tuple[summaries.Summary, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, N)
    out = []
    for k in range(SETS):  # harsher corruption, flatter and less often right predictions
        logits = rng.normal(0.0, 1.0, (N, CLASSES)) + (3.0 - k / 20) * np.eye(CLASSES)[labels]
        out.append((summaries.summarise(stored_probs(logits), 1.4), labels))
    return out


def one_at_a_time(sets):
    return [summaries.scores_of_sets([s])[0] for s in sets]


def run(benchmark, key: str, score, sets) -> None:
    RESULTS[key] = benchmark.pedantic(score, args=(sets,), rounds=3, iterations=1, warmup_rounds=1)
    MEANS[key] = benchmark.stats.stats.mean


@pytest.mark.benchmark(group=GROUP)
def test_baseline_one_set_at_a_time(benchmark, sets):
    run(benchmark, "alone", one_at_a_time, sets)


@pytest.mark.benchmark(group=GROUP)
def test_all_sets_together(benchmark, sets):
    run(benchmark, "together", summaries.scores_of_sets, sets)
    if "alone" in RESULTS:
        for a, t in zip(RESULTS["alone"], RESULTS["together"]):
            for v in summaries.VARIANTS:
                np.testing.assert_allclose(list(t[v].values()), list(a[v].values()), rtol=0, atol=1e-12)
        ratio = MEANS["alone"] / MEANS["together"]
        benchmark.extra_info["speedup_vs_one_at_a_time"] = round(ratio, 3)
        print(f"\nsets together / one at a time throughput = {ratio:.3f}")
