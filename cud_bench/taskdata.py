"""The data a run works on: a task's splits after the suite's caps, model inputs, and fitting.

Every random choice here derives from names and numbers through :func:`derive_seed`, a stable
hash, so the same suite gives the same subsets, folds and initialisations in any process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cud_bench.batched import train_many
from cud_bench.data.splits import stratified_holdout
from cud_bench.data.tasks import TaskSpec, get_task, load_task
from cud_bench.models.architectures import Architecture, ModelInputs
from cud_bench.models.features import encode
from cud_bench.stages import Telling
from cud_bench.suites import SuiteSpec
from cud_bench.train import train


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from a tuple of names and numbers: stable across processes and machines."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "big") >> 1


@dataclasses.dataclass(frozen=True)
class Split:
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's splits after the suite's caps; ``subset`` names the caps (part of every cache key)."""

    spec: TaskSpec
    train: Split
    validation: Split
    test: Split
    subset: str

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes


def prepare_task(name: str, suite: SuiteSpec) -> TaskData:
    """Load a task and apply the suite's caps with a deterministic stratified subsample."""
    ds = load_task(name)
    caps = {"train": suite.max_train, "validation": suite.max_test, "test": suite.max_test}
    splits = {}
    for split, cap in caps.items():
        columns = ds[split][:]  # one columnar read; row-by-row access to a Dataset is slow
        labels = np.asarray(columns["label"], dtype=np.int64)
        idx = np.arange(len(labels))
        if cap is not None and cap < len(labels):
            idx = stratified_holdout(labels, cap / len(labels), seed=(derive_seed("cap", name, split),))[1]
        ids, texts = columns["id"], columns["text"]
        splits[split] = Split(tuple(ids[i] for i in idx), tuple(texts[i] for i in idx), labels[idx])
    subset = f"train<={suite.max_train},test<={suite.max_test}"
    return TaskData(get_task(name).spec, splits["train"], splits["validation"], splits["test"], subset)


class Inputs(Telling):
    """Prepared model inputs per (architecture, text list), memoised for a run; features come from the cache.

    Texts not yet cached are encoded, and the stage line is told how far (an all-mpnet encoding of a
    task takes a worker 10-40 minutes, inside whichever teacher first needs the features)."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self._memo: dict[tuple[str, int], ModelInputs] = {}

    def __call__(self, arch: Architecture, texts: tuple[str, ...]) -> ModelInputs:
        key = (arch.spec.spec_hash(), hash(texts))
        if key not in self._memo:
            feats = None
            if arch.needs_features:
                feats = encode(
                    arch.needs_features, list(texts), max_length=arch.feature_length, progress=self.progress,
                    on_progress=self._encoding(arch.needs_features),
                )
            self._memo[key] = arch.prepare(list(texts), feats)
        return self._memo[key]

    def _encoding(self, encoder: str, every_s: float = 2.0) -> Callable[[int, int], None]:
        """Tell "<encoder>: k/n texts encoded" at most every ``every_s`` seconds, and "" when done."""
        last = float("-inf")

        def told(done: int, total: int) -> None:
            nonlocal last
            if done == total:
                self.tell("")
            elif time.monotonic() - last >= every_s:
                last = time.monotonic()
                self.tell(f"{encoder}: {done:,}/{total:,} texts encoded")

        return told


def fit(
    arch: Architecture,
    data: TaskData,
    train_idx: np.ndarray,
    loss_fn: Callable,
    seed: int,
    inputs: Inputs,
    targets: np.ndarray | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    train_texts = tuple(data.train.texts[i] for i in train_idx)
    x_train = inputs(arch, train_texts)
    x_val = inputs(arch, data.validation.texts)
    model = arch.build(data.num_classes, seed)
    result = train(
        arch, model, x_train, data.train.labels[train_idx], loss_fn, x_val, data.validation.labels, seed=seed, targets=targets
    )
    return model, result.to_dict()


def fit_many(
    arch: Architecture,
    data: TaskData,
    loss_fns: Sequence[Callable],
    seeds: Sequence[int],
    inputs: Inputs,
    targets: Sequence[np.ndarray | None],
    group_size: int | None = None,
) -> list[tuple[torch.nn.Module, dict[str, Any]]]:
    """:func:`fit` of several models on the whole training split (one per loss, seed and targets),
    trained together by :func:`cud_bench.batched.train_many`: each gets what it would get alone."""
    x_train = inputs(arch, data.train.texts)
    x_val = inputs(arch, data.validation.texts)
    models = [arch.build(data.num_classes, seed) for seed in seeds]
    results = train_many(
        arch, models, x_train, data.train.labels, loss_fns, x_val, data.validation.labels,
        seeds=seeds, targets=targets, group_size=group_size,
    )
    return [(model, result.to_dict()) for model, result in zip(models, results)]
