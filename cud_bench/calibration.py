"""Temperature scaling (Guo et al. 2017), fitted on validation data only.

One scalar ``T > 0`` divides the logits. It serves twice: to soften a
teacher's targets (the temperature-scaled-teacher baseline distils
``apply_temperature(teacher_logits, T)``) and as post-hoc calibration of any
student, whose numbers are reported both raw and after it. Fitting on a test
split would leak the labels the scores are computed on, so it is refused.

Scores are computed from the float16 probabilities a run stores, never from
logits: :func:`scale_stored` applies T to them reproducibly on every machine.
"""

from __future__ import annotations

import math
from typing import Any, Generator

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


# How close a temperature re-fitted on the stored float16 validation logits must come to the one the
# runner fitted on float32 logits: within REFIT_RTOL (relative), or as good a fit (mean NLL within
# REFIT_NLL_TOL nats of the re-fit's, for a flat optimum). Measured on the 133 smoke-suite teachers
# (float16 logits against float32): at most 6e-5 relative.
REFIT_RTOL = 1e-3
REFIT_NLL_TOL = 1e-6


def refit_problem(T: float, stored_logits: Any, labels: Any) -> str | None:
    """Why ``T`` is not the temperature that ``stored_logits`` (float16, :func:`cud_bench.scoring.stored_logits`)
    and ``labels`` give (None: it is, within :data:`REFIT_RTOL` or :data:`REFIT_NLL_TOL`)."""
    if not (isinstance(T, (int, float)) and not isinstance(T, bool) and math.isfinite(T) and T > 0):
        return f"temperature {T!r} is not a positive number"
    z = np.asarray(stored_logits, dtype=np.float64)
    refit = fit_temperature(z, labels, split="validation")
    if abs(T / refit - 1) <= REFIT_RTOL:
        return None
    gold = z[np.arange(len(z)), np.asarray(labels)]

    def nll(t: float) -> float:
        return float(np.mean(logsumexp(z / t, axis=1) - gold / t))

    if nll(T) - nll(refit) <= REFIT_NLL_TOL:
        return None
    return f"temperature {T!r} is not the one its stored validation logits give ({refit:.6g}; tolerance {REFIT_RTOL:g} relative)"


def fit_temperatures(logits: Any, labels: Any, split: str = "validation") -> list[float]:
    """:func:`fit_temperature` of each of M models' logits (M, n, C) on the same ``labels``, bit for bit.

    Why: a stack of models (:mod:`cud_bench.batched`) fits M temperatures after every
    epoch, and M separate searches cost M x ~20 small ``logsumexp`` calls. Here the M
    searches run in lockstep: each is scipy's bounded Brent (the code of
    ``scipy.optimize._optimize._minimize_scalar_bounded``, scipy pinned in
    requirements.lock, transcribed as a generator by :func:`_bounded_brent`), and each
    round evaluates the NLL of every unfinished search in one vectorised pass whose
    per-model arithmetic is that of :func:`fit_temperature` (the same elementwise
    divisions and row-wise reductions). The equality is tested, not assumed.
    """
    if split.lower().startswith("test"):
        raise ValueError(f"refusing to fit a temperature on the {split!r} split: fit it on validation data")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 3 or z.shape[1] == 0 or y.shape != z.shape[1:2] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"need logits (M, n, C) with n >= 1 and n integer labels, got {z.shape} and {y.shape}")
    if not (np.isfinite(z).all() and y.min() >= 0 and y.max() < z.shape[2]):
        raise ValueError("logits must be finite and labels must lie in [0, C)")
    gold = z[:, np.arange(len(y)), y]
    searches = [_bounded_brent(math.log(T_MIN), math.log(T_MAX), LOG_T_TOL) for _ in range(len(z))]
    points = {m: next(search) for m, search in enumerate(searches)}
    found: dict[int, float] = {}
    while points:
        rows = np.fromiter(points, dtype=np.int64, count=len(points))
        t = np.array([math.exp(points[m]) for m in rows])
        values = np.mean(logsumexp(z[rows] / t[:, None, None], axis=2) - gold[rows] / t[:, None], axis=1)
        for m, value in zip(rows.tolist(), values):
            try:
                points[m] = searches[m].send(float(value))
            except StopIteration as done:
                found[m] = math.exp(done.value)
                del points[m]
    return [found[m] for m in range(len(z))]


def _bounded_brent(x1: float, x2: float, xatol: float, maxfun: int = 500) -> Generator[Any, float, Any]:
    """scipy's bounded Brent minimiser (``minimize_scalar(method="bounded")``) as a generator:
    it yields each point to evaluate, is sent the function's value there, and returns the
    minimiser. Statement for statement the scipy code, so it visits the same points."""
    sqrt_eps = math.sqrt(2.2e-16)
    golden_mean = 0.5 * (3.0 - math.sqrt(5.0))
    a, b = x1, x2
    fulc = a + golden_mean * (b - a)
    nfc, xf = fulc, fulc
    rat = e = 0.0
    x = xf
    fx = yield x
    num = 1
    ffulc = fnfc = fx
    xm = 0.5 * (a + b)
    tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    while np.abs(xf - xm) > (tol2 - 0.5 * (b - a)):
        golden = 1
        if np.abs(e) > tol1:  # check for a parabolic fit
            golden = 0
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = np.abs(q)
            r = e
            e = rat
            if (np.abs(p) < np.abs(0.5 * q * r)) and (p > q * (a - xf)) and (p < q * (b - xf)):
                rat = (p + 0.0) / q
                x = xf + rat
                if ((x - a) < tol2) or ((b - x) < tol2):
                    si = np.sign(xm - xf) + ((xm - xf) == 0)
                    rat = tol1 * si
            else:
                golden = 1
        if golden:  # a golden-section step
            e = a - xf if xf >= xm else b - xf
            rat = golden_mean * e
        si = np.sign(rat) + (rat == 0)
        x = xf + si * np.maximum(np.abs(rat), tol1)
        fu = yield x
        num += 1
        if fu <= fx:
            if x >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = x, fu
        else:
            if x < xf:
                a = x
            else:
                b = x
            if (fu <= fnfc) or (nfc == xf):
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = x, fu
            elif (fu <= ffulc) or (fulc == xf) or (fulc == nfc):
                fulc, ffulc = x, fu
        xm = 0.5 * (a + b)
        tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        if num >= maxfun:
            break
    return xf


def apply_temperature(logits: Any, T: float) -> np.ndarray:
    """``softmax(logits / T)`` row-wise as float64 probabilities (n, C)."""
    _check_temperature(T)
    return softmax(np.asarray(logits, dtype=np.float64) / T, axis=-1)


def scale_stored(probs: Any, T: float) -> np.ndarray:
    """Stored probabilities (n, C) after temperature ``T``, as float64: ``p**(1/T)`` normalised per row.

    The same distribution as ``softmax(log(p) / T)``, computed so that it does not
    depend on where a value sits: ``p**(1/T)`` is evaluated once per distinct
    stored value (equal inputs give bit-equal outputs wherever they are, although
    numpy's SIMD ``power`` may differ in the last bit between machines) and each
    row is normalised by :func:`sorted_row_sum`. Rows equal up to a permutation
    of their classes therefore give bit-equal results; TS keeps the order within
    a row, so the predicted class is the stored one.
    """
    _check_temperature(T)
    p = _stored_array(probs)
    if T == 1:
        return normalise_stored(p)
    return _normalised(per_value(lambda v: np.power(v.astype(np.float64), 1.0 / T), p))


def normalise_stored(probs: Any) -> np.ndarray:
    """Stored probabilities (n, C) widened exactly to float64 and divided by their row sums
    (:func:`sorted_row_sum`): float16 rows sum to 1 only within ~5e-4. Additions and a
    division, each exactly rounded: bit-identical on every machine."""
    return _normalised(_stored_array(probs).astype(np.float64))


def variant_probs(probs: Any, T: float, variant: str) -> np.ndarray:
    """The float64 probabilities a variant's scores are computed from: "raw", the stored values
    normalised (:func:`normalise_stored`); "ts", :func:`scale_stored` at ``T``."""
    if variant == "raw":
        return normalise_stored(probs)
    if variant == "ts":
        return scale_stored(probs, T)
    raise ValueError(f"unknown variant {variant!r}; expected 'raw' or 'ts'")


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / sorted_row_sum(x)[:, None]


def _stored_array(probs: Any) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim != 2 or not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"probabilities must be a floating-point (n, C) array, got {p.dtype} {p.shape}")
    return p


def sorted_row_sum(x: np.ndarray) -> np.ndarray:
    """(n,) each row of ``x`` (n, C) summed in ascending order, one column at a time.

    numpy's own reductions may group the terms differently on other SIMD widths;
    a chain of element-wise additions is exactly rounded, so this is bit-identical
    everywhere and the same for any permutation of a row's entries.
    """
    ordered = np.sort(x, axis=1)
    total = ordered[:, 0].copy()
    for k in range(1, ordered.shape[1]):
        total += ordered[:, k]
    return total


def per_value(function: Any, x: np.ndarray) -> np.ndarray:
    """``function(x)`` evaluated once per distinct value of ``x``: equal inputs get bit-equal outputs
    even where a vectorised ufunc would take another code path for some array positions."""
    values, inverse = np.unique(x, return_inverse=True)
    return np.asarray(function(values))[inverse.reshape(x.shape)]


def _check_temperature(T: float) -> None:
    if not (isinstance(T, (int, float, np.floating)) and math.isfinite(T) and T > 0):
        raise ValueError(f"temperature must be a positive number, got {T}")
