"""Which examples a shift takes: a task's rows as a frame, minus texts a model trained on, in hash order.

Why hash the id rather than draw from a generator: the choice of one example
must not depend on which other examples exist, their order or the batch, so a
set built in pieces, in another process or from a reordered split is the same.
Every capped shift uses this one order, so the corruptions of a task share
their examples and can be compared pair by pair.

Rows are read into pandas rather than filtered with ``datasets``: its
transforms write cache files into the task's cached folder.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pandas as pd

from cud_bench.data.tasks import SPLITS, load_task


def hash_order(ids: Sequence[str]) -> np.ndarray:
    """Positions of ``ids`` sorted by the blake2b digest of each id (ties impossible for distinct ids)."""
    keys = [hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids]
    return np.array(sorted(range(len(ids)), key=keys.__getitem__), dtype=np.int64)


def stratified_hash_order(ids: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """Positions of ``ids`` in an order whose every prefix is stratified by ``labels``.

    Within each class the examples keep :func:`hash_order`; the classes are then
    interleaved by each example's quantile within its class (rank + 1/2 over the
    class size, ties broken by the id's hash), so the first ``k`` hold about
    ``k * n_c / n`` of class ``c`` (within one of it). A smaller cap therefore draws a
    stratified subset of a larger one, and one example's place depends only on its
    own id and the class sizes.
    """
    labels = np.asarray(labels)
    if len(labels) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels")
    digests = [hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids]
    keys: list[tuple[float, bytes, int]] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        ranked = sorted(members.tolist(), key=digests.__getitem__)
        keys += [((rank + 0.5) / len(ranked), digests[pos], pos) for rank, pos in enumerate(ranked)]
    return np.array([pos for _, _, pos in sorted(keys)], dtype=np.int64)


def first_by_hash(ids: Sequence[str], cap: int | None) -> np.ndarray:
    """Positions of the ``cap`` ids that come first in :func:`hash_order` (all of them if ``cap`` is None)."""
    order = hash_order(ids)
    return order if cap is None else order[:cap]


def task_rows(task: str, splits: Sequence[str] = SPLITS) -> pd.DataFrame:
    """The task's rows from ``splits``, in that order, as one frame (``id``, ``text``, ``label``, extras)."""
    data = load_task(task)
    return pd.concat([data[split].to_pandas() for split in splits], ignore_index=True)


def unseen_by(rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """``rows`` whose text occurs in no split of ``task`` (cross-posted or repeated texts are dropped)."""
    data = load_task(task)
    seen = set().union(*(data[split]["text"] for split in data))
    return rows[~rows["text"].isin(seen)]


def capped(rows: pd.DataFrame, cap: int | None) -> pd.DataFrame:
    """The first ``cap`` rows of ``rows`` in :func:`hash_order` of their ids, in that order."""
    return rows.iloc[first_by_hash(rows["id"].tolist(), cap)]
