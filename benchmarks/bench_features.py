"""Feature extraction: length-sorted batches padded per batch vs every text padded to max_length.

Same model (MiniLM-L6, CPU, default threads), same 512 real rt-polarity texts,
same batch size (64) and max_length (128); only the padding differs, and the
two are measured in the same run. Target: padding per batch at least 2.5x
faster. The cache is not involved (``embed`` is the uncached core of
``encode``). Run with

    pytest benchmarks/bench_features.py --benchmark-only --benchmark-columns=min,mean,max
"""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench.data.tasks import load_task
from cud_bench.models.encoders import load_encoder
from cud_bench.models.features import embed

N_TEXTS, BATCH_SIZE, MAX_LENGTH, TARGET = 512, 64, 128, 2.5
GROUP = "minilm-l6 features, 512 rt-polarity texts"
_best: dict[str, float] = {}  # padding -> best round (s); the baseline test runs first


@pytest.fixture(scope="module")
def setup():
    tokenizer, model = load_encoder("minilm-l6", device="cpu")
    train = load_task("rt-polarity")["train"]["text"]
    rows = np.random.default_rng(0).choice(len(train), N_TEXTS, replace=False)
    return tokenizer, model, [train[int(i)] for i in rows]


def run(benchmark, setup, padding: str) -> np.ndarray:
    tokenizer, model, texts = setup
    vectors = benchmark.pedantic(
        embed,
        args=(tokenizer, model, texts),
        kwargs={"max_length": MAX_LENGTH, "batch_size": BATCH_SIZE, "padding": padding},
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    _best[padding] = benchmark.stats.stats.min
    return vectors


@pytest.mark.benchmark(group=GROUP)
def test_baseline_pad_every_text_to_max_length(benchmark, setup):
    assert run(benchmark, setup, "max_length").shape == (N_TEXTS, 384)


@pytest.mark.benchmark(group=GROUP)
def test_sorted_batches_padded_per_batch(benchmark, setup):
    run(benchmark, setup, "longest")
    if "max_length" not in _best:
        pytest.skip("the baseline did not run, so there is no speed-up to check")
    speedup = _best["max_length"] / _best["longest"]
    benchmark.extra_info["speedup_vs_pad_to_max_length"] = round(speedup, 2)
    print(f"\nspeed-up of per-batch padding over padding to {MAX_LENGTH}: {speedup:.2f}x (target {TARGET}x)")
    assert speedup >= TARGET
