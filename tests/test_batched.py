"""Stacked training (cud_bench.batched) equals one-at-a-time training bit for bit, on real cached features.

The reference is :func:`cud_bench.train.train`, one model at a time (``group_size=1``).
Equality is exact: every weight, every epoch's losses and accuracy, the best epoch and
the test logits, for models with different losses, targets, seeds and stopping epochs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cud_bench import runner
from cud_bench.batched import stackable, train_many
from cud_bench.errors import CudBenchError
from cud_bench.models.architectures import architectures
from cud_bench.recipes import component
from cud_bench.suites import load_suite, model_presets
from cud_bench.taskdata import Inputs, derive_seed, prepare_task
from cud_bench.train import predict_logits, train

from test_runner import TINY

MAX_EPOCHS = 15


@pytest.fixture(scope="module")
def task():
    """rt-polarity as the smoke suite caps it, with the mlp-l3 student's (cached) MiniLM-L3 features."""
    data = prepare_task("rt-polarity", load_suite("smoke"))
    arch = architectures.get("mlp")(encoder="minilm-l3", max_length=64, train={"epochs": MAX_EPOCHS})  # mlp-l3, capped
    inputs = Inputs(progress=False)
    x_train, x_val, x_test = (inputs(arch, s.texts) for s in (data.train, data.validation, data.test))
    rng = np.random.default_rng(derive_seed("test-batched"))
    n, C = len(data.train.labels), data.num_classes
    # Soft targets of different sharpness around the gold labels, as teachers of different recipes give.
    logits = 3.0 * np.eye(C)[data.train.labels] + rng.standard_normal((n, C))
    soft = [np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True) for t in (0.5, 1.0, 3.0)]
    losses = [
        (component("student", "ce").build(), None),
        (component("student", "kd").build(), soft[0]),
        (component("student", "kd", T=4.0).build(), soft[1]),
        (component("student", "kd", lam_ce=0.0, lam_kd=1.0).build(), soft[2]),
        (component("teacher", "label-smoothing").build(), None),  # teacher recipes stack as well
        (component("teacher", "dus").build(), None),
    ]
    jobs = [(fn, derive_seed("student", seed), t) for seed in (0, 1) for fn, t in losses]
    return arch, data, x_train, x_val, x_test, jobs


def _fit(task, group_size):
    arch, data, x_train, x_val, x_test, jobs = task
    models = [arch.build(data.num_classes, seed) for _, seed, _ in jobs]
    results = train_many(
        arch, models, x_train, data.train.labels, [j[0] for j in jobs], x_val, data.validation.labels,
        seeds=[j[1] for j in jobs], targets=[j[2] for j in jobs], group_size=group_size,
    )
    return models, results


@pytest.fixture(scope="module")
def alone(task):
    """The reference: each model alone, on one thread (a cell's record in a Ray task or with --jobs N)."""
    arch, data, x_train, x_val, _, jobs = task
    out = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fn, seed, targets in jobs:
            model = arch.build(data.num_classes, seed)
            result = train(arch, model, x_train, data.train.labels, fn, x_val, data.validation.labels, seed=seed, targets=targets)
            out.append((model, result))
    finally:
        torch.set_num_threads(before)
    return out


def _assert_equal(task, alone, models, results):
    arch, *_, x_test, _ = task
    for (m0, r0), m1, r1 in zip(alone, models, results):
        assert (r1.best_epoch, r1.epochs_run, r1.history) == (r0.best_epoch, r0.epochs_run, r0.history)
        for (k0, v0), (k1, v1) in zip(m0.state_dict().items(), m1.state_dict().items()):
            assert k0 == k1 and torch.equal(v0, v1), k0
        assert np.array_equal(predict_logits(arch, m0, x_test), predict_logits(arch, m1, x_test))


def test_a_stack_equals_training_each_model_alone_bit_for_bit(task, alone):
    arch = task[0]
    assert stackable(arch)
    models, results = _fit(task, None)
    _assert_equal(task, alone, models, results)
    # The test covers what makes stacking hard: models leave the stack at different epochs.
    stops = {r.epochs_run for r in results}
    assert len(stops) > 1 and min(stops) < MAX_EPOCHS, stops


def test_smaller_stacks_give_the_same_models(task, alone):
    models, results = _fit(task, 5)  # 12 models: stacks of 5, 5 and 2
    _assert_equal(task, alone, models, results)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_stack_trains_the_same_models_with_one_or_two_threads(task, alone, threads):
    """Why it matters: a stack's products are big enough to use a second core, which one small
    model's are not; giving a stack more threads must not change a record."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models, results = _fit(task, None)
    finally:
        torch.set_num_threads(before)
    _assert_equal(task, alone, models, results)


def test_a_group_size_below_one_is_refused(task):
    with pytest.raises(CudBenchError, match="at least 1"):
        _fit(task, 0)


def test_architectures_without_a_stacker_train_one_at_a_time():
    assert not stackable(model_presets.get("hashed-bag")())
    assert not stackable(model_presets.get("finetune-l6")())


def _comparable(record: dict) -> dict:
    """A record without its wall times (which differ between any two runs)."""
    record = json.loads(json.dumps(record))
    record.pop("provenance")
    for part in (record["training"], (record["teacher"] or {}).get("training") or {}):
        part.pop("wall_s", None)
        part.pop("train_examples_per_s", None)
    return record


def test_the_runner_writes_the_same_records_grouped_or_one_at_a_time(tmp_path):
    teachers = tmp_path / "teachers"
    grouped = runner.run_suite(TINY, tmp_path / "grouped", progress=False, teacher_cache=teachers)
    single = runner.run_suite(TINY, tmp_path / "single", progress=False, teacher_cache=teachers, group_size=1)
    assert grouped.cells_written == single.cells_written == len(runner.expand(TINY))
    for cell in runner.expand(TINY):
        a = json.loads(cell.record_path(tmp_path / "grouped").read_text())
        b = json.loads(cell.record_path(tmp_path / "single").read_text())
        assert _comparable(a) == _comparable(b), cell.stem
