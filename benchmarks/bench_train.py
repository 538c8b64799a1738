"""Head training on cached features: ``train()`` against a minimal hand-written loop.

Target: ``train()`` reaches >= 0.9x the hand loop's throughput. Both train the
same :class:`MLPHead` (384 -> 256 -> 4, dropout 0.1) with AdamW on the same
20,000 x 384 float32 features for 3 epochs of random-order batches of 64 (the
``mlp`` defaults); the hand loop uses AdamW's default kernel, ``train()`` the
fused one (its own choice, part of what is measured). ``train()`` also does what
the hand loop skips, and that is part of its cost: a finite-loss check every step, a learning-rate scheduler, a
validation pass over 2,000 examples after each epoch and a copy of the best
state. The second benchmark stores ``hand-loop mean / train() mean`` as
``extra_info["throughput_vs_hand_loop"]`` (printed with ``-s``). Run with

    pytest benchmarks/bench_train.py --benchmark-only -s

On a machine shared with other jobs, ``OMP_NUM_THREADS=1`` keeps idle OpenMP
threads from spinning against them; both loops then run on one core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cud_bench.models.architectures import ModelInputs, architectures
from cud_bench.models.heads import MLPHead
from cud_bench.train import train

N, N_VAL, DIM, C, EPOCHS = 20_000, 2_000, 384, 4, 3
GROUP = "mlp head, 20k x 384, 3 epochs"
ARCH = architectures.get("mlp")(encoder="minilm-l6", train={"epochs": EPOCHS})
MEANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N + N_VAL, DIM), dtype=np.float32)
    y = (x @ rng.standard_normal((DIM, C), dtype=np.float32)).argmax(axis=1)
    return x, y


def hand_loop(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """The baseline: the few lines anyone would write, with nothing but the updates."""
    cfg = ARCH.spec.train
    torch.manual_seed(0)
    model = MLPHead(DIM, ARCH.spec.hidden, C, ARCH.spec.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(y), generator=order).split(cfg.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def ce(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def with_train(train_inputs: ModelInputs, y: np.ndarray, val_inputs: ModelInputs, y_val: np.ndarray) -> float:
    model = ARCH.build(C, seed=0)
    return train(ARCH, model, train_inputs, y, ce, val_inputs, y_val, seed=0).best_val_accuracy


def run(benchmark, fn, *args):
    result = benchmark.pedantic(fn, args=args, rounds=5, iterations=1, warmup_rounds=1)
    MEANS[benchmark.name] = benchmark.stats.stats.mean
    return result


@pytest.mark.benchmark(group=GROUP)
def test_baseline_hand_written_loop(benchmark, data):
    x, y = data
    model = run(benchmark, hand_loop, torch.from_numpy(x[:N]), torch.from_numpy(y[:N]))
    assert isinstance(model, MLPHead)


@pytest.mark.benchmark(group=GROUP)
def test_train_mlp_head(benchmark, data):
    x, y = data
    train_inputs, val_inputs = ARCH.prepare([""] * N, x[:N]), ARCH.prepare([""] * N_VAL, x[N:])
    assert run(benchmark, with_train, train_inputs, y[:N], val_inputs, y[N:]) > 0.5  # chance is 0.25
    baseline = MEANS.get("test_baseline_hand_written_loop")
    if baseline is not None:
        ratio = baseline / MEANS[benchmark.name]
        benchmark.extra_info["throughput_vs_hand_loop"] = round(ratio, 3)
        print(f"\ntrain() throughput / hand-written loop throughput = {ratio:.3f} (target >= 0.9)")
