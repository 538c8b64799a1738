"""Deterministic stratified hold-out splits.

Why not scikit-learn's ``train_test_split(stratify=...)``: it refuses classes
with a single example, and reuters-r52 has several. The rule here works for any
class size and is simple enough to check by hand:

* for each class ``c`` with ``n_c`` examples, ``k_c = floor(fraction * n_c + 0.5)``
  (round half up), capped at ``n_c - 1`` so every class keeps at least one
  example on the kept side; classes smaller than ``1 / (2 * fraction)`` thus
  give nothing to the held-out side;
* which ``k_c`` examples are held out is drawn by ``numpy.random.default_rng``
  seeded with ``(*seed, c)``: a class's draw depends only on its own members,
  the seed and ``c``, never on other classes or on row order beyond the
  members' own order.

Both returned index arrays are sorted, so the splits keep the source's order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def stratified_holdout(labels: Sequence[int], fraction: float, seed: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(labels)-1`` into (kept, held_out), stratified by label.

    ``labels`` are non-negative class indices; ``fraction`` is in [0, 1);
    ``seed`` is the entropy for numpy's ``SeedSequence`` (the class index is
    appended per class). Returns two sorted int64 arrays that partition the
    positions.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    held = [np.empty(0, dtype=np.int64)]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(int(np.floor(fraction * members.size + 0.5)), members.size - 1)
        if k > 0:
            rng = np.random.default_rng([*seed, int(c)])
            held.append(members[rng.permutation(members.size)[:k]])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(labels.size, dtype=np.int64), held_out, assume_unique=True)
    return kept, held_out
