"""Long-tailed training variants of a task: class sizes cut to an exponential profile.

Class ``c`` (in the task's label order, so the first class is the head) keeps
``n_c = floor(n_max * ratio ** (-c / (C - 1)) + 0.5)`` examples, where
``n_max`` is the size of the smallest class in the source split, so every
class can meet its target: the first class keeps ``n_max``, the last
``n_max / ratio`` (at least one). Which examples a class keeps is a seeded
permutation of its members that does not depend on the ratio, so the variant
with ratio 100 is a subset of the one with ratio 10. The test split is left
balanced.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

SEED = 0


def exponential_profile(n_max: int, n_classes: int, ratio: float) -> list[int]:
    """Class sizes from ``n_max`` down to ``n_max / ratio``, geometric in the class index."""
    if n_classes < 2 or ratio < 1:
        raise ValueError(f"need at least 2 classes and ratio >= 1, got {n_classes} and {ratio}")
    return [max(1, int(np.floor(n_max * ratio ** (-c / (n_classes - 1)) + 0.5))) for c in range(n_classes)]


def long_tail(frame: pd.DataFrame, test: pd.DataFrame, label_names: Sequence[str], ratio: float) -> pd.DataFrame:
    """The rows of the train ``frame`` (columns ``text``, ``label``) kept under the profile, in source order.

    Only rows the task's split rule would keep are candidates (a non-empty text,
    its first occurrence, not in ``test``), so the built task meets the profile exactly.
    """
    text = frame["text"].astype(str)
    frame = frame[(text.str.strip() != "") & ~text.duplicated() & ~text.isin(set(test["text"]))]
    members = [np.flatnonzero(frame["label"].to_numpy() == name) for name in label_names]
    sizes = exponential_profile(min(len(m) for m in members), len(label_names), ratio)
    kept = [
        m[np.random.default_rng([SEED, c]).permutation(len(m))[:n]]
        for c, (m, n) in enumerate(zip(members, sizes, strict=True))
    ]
    return frame.iloc[np.sort(np.concatenate(kept))]
