"""Temperature scaling (Guo et al. 2017), fitted on validation data only.

One scalar ``T > 0`` divides the logits. It serves twice: to soften a
teacher's targets (the temperature-scaled-teacher baseline distils
``apply_temperature(teacher_logits, T)``) and as post-hoc calibration of any
student, whose numbers are reported both raw and after it. Fitting on a test
split would leak the labels the scores are computed on, so it is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax

# Search range for T. Real models land within [0.05, 20]; an optimum at a bound
# means the validation logits are (nearly) separable or carry no signal.
T_MIN, T_MAX = 1e-2, 1e2
LOG_T_TOL = 1e-6


def fit_temperature(logits: Any, labels: Any, split: str = "validation") -> float:
    """The T in [T_MIN, T_MAX] that minimises the mean NLL of ``softmax(logits / T)``.

    ``logits`` (n, C) and integer ``labels`` (n,) may be numpy arrays or CPU
    tensors; ``split`` names where they come from and must not be a test split
    (ValueError). The search runs over ``log T`` with bounded Brent in float64,
    so the result is deterministic. NLL is convex in ``1/T``, hence unimodal in
    ``log T``: the 1-D search finds the global minimum.
    """
    if split.lower().startswith("test"):
        raise ValueError(f"refusing to fit a temperature on the {split!r} split: fit it on validation data")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or len(z) == 0 or y.shape != z.shape[:1] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"need logits (n, C) with n >= 1 and n integer labels, got {z.shape} and {y.shape}")
    if not (np.isfinite(z).all() and y.min() >= 0 and y.max() < z.shape[1]):
        raise ValueError("logits must be finite and labels must lie in [0, C)")
    gold = z[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float(np.mean(logsumexp(z / t, axis=1) - gold / t))

    result = minimize_scalar(
        nll, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": LOG_T_TOL}
    )
    return math.exp(result.x)


def apply_temperature(logits: Any, T: float) -> np.ndarray:
    """``softmax(logits / T)`` row-wise as float64 probabilities (n, C)."""
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"temperature must be a positive number, got {T}")
    return softmax(np.asarray(logits, dtype=np.float64) / T, axis=-1)
