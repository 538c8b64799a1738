"""Derived figures of one method under corruption: mean and worst ECE, and ECE against severity.

Pure functions of the per-cell ECE values (any other metric works the same),
so the leaderboard and claims compute them from stored records.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class CorruptionFigures:
    """``mean``: over every (corruption, severity) cell; ``worst``: the largest cell, found at ``worst_at``.

    ``by_severity``: (severity, mean over corruptions) pairs, in severity order,
    starting with (0, clean ECE) when the clean value is given. ``auc``: the
    area under that curve (trapezoid rule) divided by its width, i.e. the
    curve's mean height, in ECE units, so it compares across severity scales.
    """

    mean: float
    worst: float
    worst_at: tuple[str, int]
    by_severity: tuple[tuple[int, float], ...]
    auc: float


def corruption_figures(ece: Mapping[tuple[str, int], float], clean: float | None = None) -> CorruptionFigures:
    """Figures from ``{(corruption id, severity): ECE}``, a full grid: every corruption at every severity."""
    if not ece:
        raise ValueError("no (corruption, severity) values given")
    corruptions = sorted({c for c, _ in ece})
    severities = sorted({s for _, s in ece})
    missing = [(c, s) for c in corruptions for s in severities if (c, s) not in ece]
    if missing:
        raise ValueError(f"the grid of corruptions x severities is incomplete; missing {missing[:5]}")
    values = [clean, *ece.values()] if clean is not None else list(ece.values())
    if not all(math.isfinite(v) for v in values):
        raise ValueError("ECE values must be finite")
    worst_at = max(ece, key=lambda cell: (ece[cell], cell))
    curve = [(s, float(np.mean([ece[c, s] for c in corruptions]))) for s in severities]
    if clean is not None:
        curve.insert(0, (0, float(clean)))
    x = np.array([s for s, _ in curve], dtype=np.float64)
    y = np.array([v for _, v in curve])
    width = x[-1] - x[0]
    auc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / width) if width > 0 else float(y[0])
    return CorruptionFigures(
        mean=float(np.mean(list(ece.values()))),
        worst=float(ece[worst_at]),
        worst_at=worst_at,
        by_severity=tuple(curve),
        auc=auc,
    )
