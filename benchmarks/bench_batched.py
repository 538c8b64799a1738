"""Stacked training of many MLP heads (:func:`cud_bench.batched.train_many`) against the per-model loop.

Target: >= 3x the per-model loop's throughput on 2 cores. Both train the same 16
students, the shape of one task x student architecture of the ``cpu`` suite
(2,000 training and 500 validation texts as 384-d features, 4 classes): per seed
(2 seeds) one CE student and seven KD students on different soft targets, the
``mlp-l3`` preset (hidden 256, dropout 0.1, fused AdamW, batch 128), at most 8
epochs with the usual early stopping. The per-model loop is ``train()`` called
once per model (``group_size=1``), the reference the equality test compares with;
the stacked run is ``train_many`` with every model in one stack. Both include the
per-epoch validation pass and temperature fit each model needs for early stopping.
Each runs with 1 and with 2 torch threads (``torch.set_num_threads``) in the same
session: one small model's products are too small to use a second core, a stack's
may be big enough. Every stacked run must equal the one-thread per-model loop bit
for bit (asserted); the ratios ``loop mean / stacked mean`` against the loop at each
thread count are stored in ``extra_info`` (printed with ``-s``). Run with

    OMP_NUM_THREADS=1 pytest benchmarks/bench_batched.py --benchmark-only -s

On a machine shared with other jobs, ``OMP_NUM_THREADS=1`` keeps idle OpenMP threads
from spinning against them (measured here: 5x slower steps with two spinning threads);
the 2-thread runs set two threads anyway, so they measure what a second core gives
only on an otherwise idle machine.

Measured here, 2 cores shared with ~10 runnable processes (load average 8-11), means of
2 rounds, seconds:

    environment                                loop 1t  stacked 1t  loop 2t  stacked 2t
    OMP_NUM_THREADS=1                            15.95        7.96    321.8       222.2
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE    11.89        8.76    13.31        9.80

Stacked / loop at 1 thread: 2.00x and 1.36x (the same code; the other jobs' load varied). With two threads and no free core, OpenMP's default active wait makes both 20-28x
slower; passive waiting removes that, and the second thread then gains nothing because
no core is free. The stacked runs were bit-identical to the one-thread loop at both
thread counts in both sessions.

On an idle machine (load average 0.1, 2026-11-30, ``OMP_NUM_THREADS=1``), means of 2 rounds:

    loop 1t 6.28 s, loop 2t 6.99 s, stacked 1t 4.65 s, stacked 2t 3.30 s

Stacked at 2 threads is 1.90x the one-thread loop (2.12x the two-thread loop); at 1
thread 1.35x. Below the 3x target. Where a 2-thread stacked run's 3.3 s go (timers
around each phase): forward 1.17 s (of which dropout masks 0.69 s: torch draws them
serially per generator, ~10 ns per element, the same draws the loop makes), the 16
per-model loss calls 0.72 s, backward 0.77 s, AdamW 0.23 s, validation and temperature
fits 0.38 s. Tried and dropped: drawing the next step's masks on a second Python thread
while the step computes. With 2 torch threads it made the run 1.5-2x slower (the mask
thread and OpenMP's team compete for two cores, and GIL hand-offs slow the per-model
loss loop of tiny ops); with 1 torch thread it gained ~10%. What would still help: one
loss call for the whole stack (the per-model loss code is the largest overhead left;
bit-identity must then be re-established per loss) and masks from a generator that can
be drawn in parallel (which changes every dropout mask, hence every trained number).

Why the ratio is bounded: stacking removes per-model overheads (dispatch, Python, one
optimiser call and one temperature search per model), not arithmetic. The arithmetic
every model needs alone (its matrix products and its own dropout draws) was ~half of
the stacked run's time in a profile here (matmuls 39%, dropout masks 11%), so on one
core the ratio cannot much exceed ~4x whatever else is removed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cud_bench.batched import train_many
from cud_bench.models.architectures import architectures
from cud_bench.recipes import component

N, N_VAL, DIM, C, EPOCHS, SEEDS, KD = 2_000, 500, 384, 4, 8, (0, 1), 7
GROUP = "16 mlp-l3 students, 2k x 384, <= 8 epochs"
ARCH = architectures.get("mlp")(encoder="minilm-l3", max_length=64, train={"epochs": EPOCHS})  # the mlp-l3 preset
THREADS = (1, 2)  # torch threads: the per-model loop cannot use a second one, a stack can
ROUNDS = 2
MEANS: dict[tuple[str, int], float] = {}
RESULTS: dict[tuple[str, int], list] = {}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N + N_VAL, DIM), dtype=np.float32)
    z = x @ rng.standard_normal((DIM, C), dtype=np.float32)
    y = (z + 3 * rng.standard_normal(z.shape, dtype=np.float32)).argmax(axis=1)
    soft = [np.exp(z[:N] / t) / np.exp(z[:N] / t).sum(1, keepdims=True) for t in np.linspace(4.0, 16.0, KD)]
    losses = [component("student", "ce").build()] + [component("student", "kd").build()] * KD
    jobs = [(fn, seed, t) for seed in SEEDS for fn, t in zip(losses, [None, *soft])]
    return ARCH.prepare([""] * N, x[:N]), y[:N], ARCH.prepare([""] * N_VAL, x[N:]), y[N:], jobs


def fit_all(data, group_size, threads):
    train_inputs, y, val_inputs, y_val, jobs = data
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = [ARCH.build(C, seed) for _, seed, _ in jobs]
        results = train_many(
            ARCH, models, train_inputs, y, [j[0] for j in jobs], val_inputs, y_val,
            seeds=[j[1] for j in jobs], targets=[j[2] for j in jobs], group_size=group_size,
        )
    finally:
        torch.set_num_threads(before)
    return [(r.history, [p.detach().clone() for p in m.parameters()]) for m, r in zip(models, results)]


def run(benchmark, key, *args):
    result = benchmark.pedantic(fit_all, args=args, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    MEANS[key] = benchmark.stats.stats.mean
    RESULTS[key] = result
    return result


def same(a, b) -> bool:
    return all(h0 == h1 and all(torch.equal(x, y) for x, y in zip(p0, p1)) for (h0, p0), (h1, p1) in zip(a, b))


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("threads", THREADS)
def test_baseline_per_model_loop(benchmark, data, threads):
    loop = run(benchmark, ("loop", threads), data, 1, threads)
    assert len(loop) == len(data[4])
    if threads != 1 and ("loop", 1) in RESULTS:
        # not asserted: the loop's small products may round differently with another thread count
        benchmark.extra_info["equal_to_one_thread_loop"] = same(RESULTS[("loop", 1)], loop)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("threads", THREADS)
def test_stacked(benchmark, data, threads):
    stacked = run(benchmark, ("stacked", threads), data, None, threads)
    reference = RESULTS.get(("loop", 1))
    if reference is not None:  # the equality test's reference: one model at a time, one thread
        assert same(reference, stacked), f"stacked with {threads} thread(s) differs from the one-thread per-model loop"
    for base in THREADS:
        if ("loop", base) in MEANS:
            ratio = MEANS[("loop", base)] / MEANS[("stacked", threads)]
            benchmark.extra_info[f"throughput_vs_per_model_loop_{base}_thread"] = round(ratio, 3)
            print(f"\nstacked ({threads} thread(s)) / per-model loop ({base} thread(s)) throughput = {ratio:.3f}")
