"""Degenerate models: a classifier that predicts one class for nearly every example.

Such a model (e.g. an under-trained student that kept its first epoch and predicts the
majority class) is not a method's result but a failed run; its scores would dominate
means over tasks. Records flag it and claims exclude it, and say how many they excluded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAJORITY_SHARE = 0.95  # a model whose most common prediction covers at least this share is degenerate


def majority_share(probs: Any) -> float:
    """Share of examples whose predicted class (first maximal probability) is the most common one."""
    predicted = np.asarray(probs).argmax(axis=1)
    return float(np.bincount(predicted).max() / len(predicted))


def is_degenerate(probs: Any) -> bool:
    """Whether the model predicts one class for at least ``MAJORITY_SHARE`` of ``probs`` (n, C)."""
    return majority_share(probs) >= MAJORITY_SHARE
