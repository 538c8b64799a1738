"""Classification, calibration and selective-prediction metrics, with bootstrap tests.

Every number the benchmark stores is a :class:`MetricValue`: a float and the
:class:`~cud_bench.specs.MetricSpec` that says what it means (``value.id`` such as
``ece/uniform/15/l1``). Metrics are registered in :data:`METRICS` by spec name,
so ``compute_all`` and the bootstrap read them from one place.

Conventions (pinned by tests/test_metrics.py):

- Input: ``probs`` of shape (n, C) with n >= 1 and C >= 2, entries in [0, 1],
  rows summing to 1 within ``SUM_ATOL`` (so float16-stored probabilities pass);
  ``labels`` of shape (n,), integers in [0, C). numpy arrays or CPU torch
  tensors. Anything else raises one ``ValueError`` that names the problem.
- The predicted class is the first class of maximal probability (or a class
  given by the caller: scoring passes the stored probabilities' argmax for their
  temperature-scaled copies); its probability is the confidence.
- Ties. Confidences (and OOD scores) form *tie groups*: sorted, a value joins
  the previous one's group when within ``TIE_RTOL`` (relative) + ``TIE_ATOL``
  of it. Values equal up to last-bit noise (the same stored row scored on two
  machines, duplicate texts, a constant predictor) are one group; distinct
  float16 values never are. Every rule that orders or bins confidences uses
  the group's largest value, so a group is never split; a value within the
  same tolerance above a bin edge counts as on the edge (normalised float16
  rows such as [0.8, 0.2] sit exactly on k/15). So a last-bit change of any
  probability moves a score only through the sums it enters (~1e-12).
- Calibration errors are fractions in [0, 1]; views may multiply by 100.
- Bins are half-open, (lo, hi], except that the first also holds 0: a
  confidence of exactly 1.0 falls in the last bin. ``uniform`` bins have equal
  width. ``quantile`` bins (equal mass) have inner edges at the i/n_bins
  empirical quantiles (inverted CDF) of the confidences, so without ties each
  holds n/n_bins examples (+-1); a tie group is never split, so it may
  overfill one bin and leave another empty. Empty bins contribute nothing.
- ECE = sum_b (n_b / n) |acc_b - conf_b|; MCE = max over non-empty bins of
  |acc_b - conf_b|.
- Debiased CE (``debiased_ce/quantile/15/l2sq``; Kumar, Liang & Ma 2019) =
  sum_b (n_b / n) [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)] over
  the top-label bins (equal-mass by default, as Kumar et al.), bins with
  n_b < 2 contributing 0: the debiased estimate of the *squared* L2
  calibration error, not clipped at 0 (so it is unbiased and may be slightly
  negative); Kumar et al.'s published number is sqrt(max(0, value)).
- Smooth ECE (``smooth_ece``; Blasiok & Nakkiran 2023) = smECE_s* with
  smECE_s = integral over t in [0, 1] of |(1/n) sum_i K_s(t, c_i) (y_i - c_i)|,
  c_i the confidence, y_i = 1[correct]; K_s is the Gaussian kernel of
  bandwidth s reflected at 0 and 1 (the density of c + sZ folded into [0, 1]),
  and s* is the fixed point smECE_s* = s* (unique: smECE_s decreases in s),
  bracketed on [0, 1] to 2**-40 (a root search); the value is s*. Computed on a grid
  of ``SMOOTH_GRID`` intervals (linear deposit, FFT smoothing, trapezoid).
- Classwise ECE (Kull et al. 2019) = mean over classes k of the ECE of p_k
  against 1[y = k], over all n examples, in uniform bins.
- Brier = mean over examples of sum_k (p_k - 1[y = k])^2, in [0, 2] (twice
  scikit-learn's binary ``brier_score_loss``).
- NLL = mean of -ln max(p_y, NLL_EPS), in nats.
- AURC = mean over coverages k/n, k = 1..n, of the error rate of the k most
  confident examples (Geifman et al. 2018). Within a tie group the errors are
  spread evenly (the expectation over random tie-breaking), so AURC does not
  depend on example order.
- OOD AUROC: Mann-Whitney U over the pooled scores' tie groups (ties count half).
- Macro-F1 averages per-class F1 over the classes present in labels or
  predictions, as scikit-learn does.
- Row sums use the array's precision (float32 or float64); sums over examples
  use float64.
- Floors (:func:`floor`): a calibration score's mean (and upper quantile) over
  labels drawn from the model's own probabilities: what a perfectly calibrated
  model with the same confidences and n scores by sampling alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

from cud_bench.registry import Registry
from cud_bench.specs import MetricSpec

# Version of the definitions behind stored scores (leaderboard entries record it). 1: release
# 1.0.0 as built, from log/softmax of the stored probabilities, ties split by last bits;
# 2: from the stored float16 values directly, tie groups (this module's docstring).
SCORING_VERSION = 2
SUM_ATOL = 1e-3  # rows of probs must sum to 1 within this (float16 rounding is < 5e-4)
NLL_EPS = 1e-12  # p_y is clipped here, so one example adds at most ~27.6 nats
# Values closer than this are one tie group. Far above the last-bit noise of any
# computation (~1e-13 relative), far below the spacing of distinct float16 values (~5e-4).
TIE_RTOL = 1e-9
TIE_ATOL = 1e-12
STRATEGIES = ("uniform", "quantile")


@dataclasses.dataclass(frozen=True)
class MetricValue:
    """A metric's value and the spec that defines it; compare values only when ids match."""

    value: float
    spec: MetricSpec

    @property
    def id(self) -> str:
        return self.spec.id

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "value": self.value, "spec": self.spec.to_dict()}


@dataclasses.dataclass(frozen=True, eq=False)
class Predictions:
    """Validated probabilities and labels, with per-example summaries computed once, on first use.

    Build it with :meth:`of` (which validates) to score many metrics: validation
    and the argmax then run once, and metrics that need only ``probs`` and
    ``labels`` (classwise ECE) skip the rest. ``probs`` stays float32 or float64
    (float16 is widened to float32); the summaries are float64.
    """

    probs: np.ndarray  # (n, C)
    labels: np.ndarray  # (n,) int64 in [0, C)
    given_predicted: np.ndarray | None = None  # (n,) the predicted class, when known better than argmax(probs)

    @classmethod
    def of(cls, probs: Any, labels: Any, predicted: Any = None) -> Predictions:
        """Validated predictions; ``predicted`` (n,) overrides ``argmax(probs)`` (scoring passes the
        stored probabilities' argmax for their temperature-scaled copies, which keep its order)."""
        probs, labels = _checked(probs, labels)
        if predicted is not None:
            predicted = _numpy(predicted)
            if predicted.shape != labels.shape or not np.issubdtype(predicted.dtype, np.integer):
                raise ValueError(f"predicted must be {labels.shape[0]} integers, got {predicted.dtype} {predicted.shape}")
            if predicted.min() < 0 or predicted.max() >= probs.shape[1]:
                raise ValueError(f"predicted classes must be in [0, {probs.shape[1]})")
            predicted = predicted.astype(np.int64, copy=False)
        return cls(probs, labels, predicted)

    @functools.cached_property
    def predicted(self) -> np.ndarray:
        """(n,) the first class of maximal probability (or the given class)."""
        return self.probs.argmax(axis=1) if self.given_predicted is None else self.given_predicted

    @functools.cached_property
    def confidence(self) -> np.ndarray:
        """(n,) probability of the predicted class."""
        return self.probs[np.arange(len(self.labels)), self.predicted].astype(np.float64)

    @functools.cached_property
    def tied_confidence(self) -> np.ndarray:
        """(n,) each confidence replaced by the largest of its tie group (:func:`tie_representatives`):
        what bins and rankings use, so that ties are never split."""
        return tie_representatives(self.confidence)

    @functools.cached_property
    def true_prob(self) -> np.ndarray:
        """(n,) probability of the label."""
        return self.probs[np.arange(len(self.labels)), self.labels].astype(np.float64)

    @functools.cached_property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @functools.cached_property
    def sq_norm(self) -> np.ndarray:
        """(n,) sum_k p_k^2, summed in probs' dtype."""
        return np.einsum("ij,ij->i", self.probs, self.probs).astype(np.float64)

    def take(self, rows: np.ndarray) -> Predictions:
        """The examples at ``rows`` (a bootstrap resample), without re-validating."""
        return _Rows(self, rows)  # type: ignore[return-value]  # same attributes, read lazily


class _Rows:
    """Some rows of a Predictions. Each array is indexed from the parent's on first
    use, so a resample costs no argmax and no copy of ``probs`` unless a metric reads it."""

    def __init__(self, parent: Predictions, rows: np.ndarray) -> None:
        self._parent, self._rows = parent, rows

    def __getattr__(self, name: str) -> np.ndarray:
        value = getattr(self._parent, name)[self._rows]
        setattr(self, name, value)
        return value


METRICS: Registry[Callable[[Predictions, MetricSpec], float]] = Registry("metric")
# Out-of-scope detection scores (cud_bench.scoring.ood_scores): AUROC of max-probability and of
# negative entropy, and the mean confidence on out-of-scope inputs.
DETECTION_METRICS = ("ood_auroc/msp", "ood_auroc/entropy", "ood_mean_confidence")

STANDARD_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy"),
    MetricSpec("macro_f1"),
    MetricSpec("nll"),
    MetricSpec("brier"),
    MetricSpec("ece", "uniform", 15, "l1"),
    MetricSpec("ece", "quantile", 15, "l1"),
    MetricSpec("classwise_ece", "uniform", 15, "l1"),
    MetricSpec("mce", "uniform", 15, "max"),
    MetricSpec("aurc"),
    MetricSpec("mean_confidence"),
    MetricSpec("debiased_ce", "quantile", 15, "l2sq"),
    MetricSpec("smooth_ece"),
)


def evaluate(spec: MetricSpec, preds: Predictions) -> MetricValue:
    """The metric ``spec`` names, on already validated predictions."""
    return MetricValue(float(METRICS.get(spec.name)(preds, spec)), spec)


def compute_all(
    probs: Any, labels: Any, specs: Sequence[MetricSpec] = STANDARD_SPECS, predicted: Any = None
) -> dict[str, MetricValue]:
    """Every metric in ``specs``, keyed by spec id; the input is validated once. ``predicted``:
    see :meth:`Predictions.of`."""
    preds = Predictions.of(probs, labels, predicted)
    return {spec.id: evaluate(spec, preds) for spec in specs}


# -- public functions: floats, for one metric on raw arrays ---------------------------


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of examples whose predicted class is the label."""
    return _score(MetricSpec("accuracy"), probs, labels)


def macro_f1(probs: Any, labels: Any) -> float:
    """Unweighted mean of per-class F1 over classes present in labels or predictions."""
    return _score(MetricSpec("macro_f1"), probs, labels)


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the label in nats, p_y clipped at ``NLL_EPS``."""
    return _score(MetricSpec("nll"), probs, labels)


def brier(probs: Any, labels: Any) -> float:
    """Multiclass Brier score in [0, 2]: mean squared distance to the one-hot label."""
    return _score(MetricSpec("brier"), probs, labels)


def mean_confidence(probs: Any, labels: Any) -> float:
    """Mean top-class probability; compare with accuracy for over/under-confidence."""
    return _score(MetricSpec("mean_confidence"), probs, labels)


def aurc(probs: Any, labels: Any) -> float:
    """Area under the risk-coverage curve of selecting by confidence, in [0, 1]; lower is better."""
    return _score(MetricSpec("aurc"), probs, labels)


def ece(probs: Any, labels: Any, n_bins: int = 15, strategy: str = "uniform") -> float:
    """Top-label expected calibration error, a fraction in [0, 1]."""
    return _score(MetricSpec("ece", strategy, n_bins, "l1"), probs, labels)


def mce(probs: Any, labels: Any, n_bins: int = 15, strategy: str = "uniform") -> float:
    """Top-label maximum calibration error over non-empty bins, in [0, 1]."""
    return _score(MetricSpec("mce", strategy, n_bins, "max"), probs, labels)


def classwise_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Mean over classes of the calibration error of p_k (Kull et al. 2019), uniform bins."""
    return _score(MetricSpec("classwise_ece", "uniform", n_bins, "l1"), probs, labels)


def _score(spec: MetricSpec, probs: Any, labels: Any) -> float:
    return evaluate(spec, Predictions.of(probs, labels)).value


# -- metric implementations ------------------------------------------------------------


@METRICS.register("accuracy")
def _accuracy(preds: Predictions, spec: MetricSpec) -> float:
    return np.mean(preds.correct)


@METRICS.register("macro_f1")
def _macro_f1(preds: Predictions, spec: MetricSpec) -> float:
    # Classes above both maxima are in neither labels nor predictions: skipped anyway.
    size = 1 + max(preds.labels.max(), preds.predicted.max())
    true = np.bincount(preds.labels, minlength=size)
    predicted = np.bincount(preds.predicted, minlength=size)
    hits = np.bincount(preds.labels[preds.correct], minlength=size)
    present = true + predicted > 0
    return np.mean(2 * hits[present] / (true + predicted)[present])


@METRICS.register("nll")
def _nll(preds: Predictions, spec: MetricSpec) -> float:
    return -np.mean(np.log(np.maximum(preds.true_prob, NLL_EPS)))


@METRICS.register("brier")
def _brier(preds: Predictions, spec: MetricSpec) -> float:
    # sum_k (p_k - onehot_k)^2 = sum_k p_k^2 - 2 p_y + 1
    return np.mean(preds.sq_norm - 2 * preds.true_prob + 1)


@METRICS.register("mean_confidence")
def _mean_confidence(preds: Predictions, spec: MetricSpec) -> float:
    return np.mean(preds.confidence)


@METRICS.register("aurc")
def _aurc(preds: Predictions, spec: MetricSpec) -> float:
    order = np.argsort(-preds.tied_confidence, kind="stable")
    confidence, errors = preds.tied_confidence[order], (~preds.correct[order]).astype(np.float64)
    n = len(order)
    starts = np.flatnonzero(np.r_[True, confidence[1:] != confidence[:-1]])  # tie groups
    sizes = np.diff(np.r_[starts, n])
    run_errors = np.add.reduceat(errors, starts)
    errors_before = np.cumsum(run_errors) - run_errors
    run = np.repeat(np.arange(len(starts)), sizes)
    k = np.arange(1, n + 1)
    expected_errors = errors_before[run] + (k - starts[run]) * (run_errors / sizes)[run]
    return np.mean(expected_errors / k)


@METRICS.register("ece")
def _ece(preds: Predictions, spec: MetricSpec) -> float:
    _check_norm(spec, "l1")
    _, _, confidence, hits = _top_label_bins(preds, spec.n_bins, spec.binning)
    return np.abs(hits - confidence).sum() / len(preds.labels)


@METRICS.register("mce")
def _mce(preds: Predictions, spec: MetricSpec) -> float:
    _check_norm(spec, "max")
    _, count, confidence, hits = _top_label_bins(preds, spec.n_bins, spec.binning)
    full = count > 0
    return np.max(np.abs(hits[full] - confidence[full]) / count[full])


@METRICS.register("classwise_ece")
def _classwise_ece(preds: Predictions, spec: MetricSpec) -> float:
    _check_norm(spec, "l1")
    if spec.binning != "uniform":
        raise ValueError(f"classwise ECE uses uniform bins (Kull et al. 2019), got spec {spec.id}")
    edges = _bin_edges(spec.n_bins, "uniform")
    probs, labels = preds.probs, preds.labels
    n, n_classes = probs.shape
    # Entries at or below the first edge, most of them when C is large, all fall in
    # bin 0, whose totals follow from column sums; only the rest are binned one by
    # one. The threshold, in probs' dtype, is at most edges[1], so every skipped
    # entry is in bin 0; entries it keeps that are still <= edges[1] get bin 0 below.
    flat = np.flatnonzero(probs >= probs.dtype.type(edges[1]))
    rows, cols = np.divmod(flat, n_classes)
    values = probs.ravel()[flat].astype(np.float64)
    index = cols * spec.n_bins + _bin_index(values, edges)
    _, confidence, hits = _bin_sums(index, values, labels[rows] == cols, (n_classes, spec.n_bins))
    confidence[:, 0] += probs.sum(axis=0, dtype=np.float64) - confidence.sum(axis=1)
    hits[:, 0] += np.bincount(labels, minlength=n_classes) - hits.sum(axis=1)
    return np.abs(hits - confidence).sum() / (n * n_classes)


@METRICS.register("debiased_ce")
def _debiased_ce(preds: Predictions, spec: MetricSpec) -> float:
    _check_norm(spec, "l2sq")
    _, count, confidence, hits = _top_label_bins(preds, spec.n_bins, spec.binning)
    return _debiased_squared(count, confidence, hits)


def _debiased_squared(count: np.ndarray, confidence: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Debiased squared L2 calibration error from per-bin count, summed confidence and hits
    (last axis: bins; leading axes broadcast): sum_b (n_b / n) [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)],
    bins with n_b < 2 contributing 0."""
    full = count >= 2
    safe = np.where(full, count, 2.0)
    accuracy, mean_confidence = hits / safe, confidence / safe
    term = (accuracy - mean_confidence) ** 2 - accuracy * (1 - accuracy) / (safe - 1)
    return (np.where(full, count * term, 0.0)).sum(axis=-1) / count.sum(axis=-1)


SMOOTH_GRID = 4096  # intervals of [0, 1] the residuals are deposited on: spacing 2.4e-4
SMOOTH_TOLERANCE = 2.0**-40  # width the bandwidth fixed point is bracketed to (40 bisection steps of [0, 1])


@METRICS.register("smooth_ece")
def _smooth_ece_metric(preds: Predictions, spec: MetricSpec) -> float:
    return smooth_ece_at(preds.confidence, preds.correct, None)


def smooth_ece_at(confidence: np.ndarray, correct: np.ndarray, sigma: float | None) -> float:
    """Smooth ECE of top-label ``confidence`` against ``correct`` at bandwidth ``sigma``, or, with
    None, at the fixed point sigma* = smECE_sigma* (then the value is sigma* itself)."""
    residual = np.asarray(correct, dtype=np.float64) - np.asarray(confidence, dtype=np.float64)
    return float(_smooth_ece(confidence, residual[None, :], sigma)[0])


def _smooth_ece(confidence: np.ndarray, residuals: np.ndarray, sigma: float | None) -> np.ndarray:
    """(D,) smooth ECE of D sets of ``residuals`` (D, n) = correct - confidence at the same ``confidence``."""
    return _smooth_ece_of_spectra(_residual_spectra(confidence, residuals), np.full(len(residuals), residuals.shape[1]), sigma)


def smooth_ece_of_sets(confidences: Sequence[np.ndarray], corrects: Sequence[np.ndarray]) -> np.ndarray:
    """(D,) smooth ECE at its fixed point of D sets, each its own ``confidence`` (n_d,) and
    ``correct`` (n_d,): the same values as one set at a time, found in one root search, since
    one row at a time spent most of its time in numpy's per-call overhead (a cell's 100
    summarised corrupted sets, raw and after TS, scored 3x faster)."""
    if not confidences:
        return np.zeros(0)
    spectra = [
        _residual_spectra(c, (np.asarray(k, dtype=np.float64) - np.asarray(c, dtype=np.float64))[None, :])
        for c, k in zip(confidences, corrects, strict=True)
    ]
    return _smooth_ece_of_spectra(np.concatenate(spectra), np.array([len(c) for c in confidences]), None)


def _residual_spectra(confidence: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """(D, N + 1) spectra of D sets of ``residuals`` (D, n) deposited at ``confidence`` (n,).

    Residuals are deposited on a grid of ``SMOOTH_GRID`` intervals of [0, 1] by
    linear interpolation, mirrored into [-1, 0] (the even extension, period 2), and
    transformed: :func:`_smooth_ece_of_spectra` smooths them there by a Gaussian through its
    Fourier multiplier exp(-2 pi^2 sigma^2 xi^2) (a periodic Gaussian on the even extension is
    the Gaussian reflected at 0 and at 1).
    """
    n_grid = SMOOTH_GRID
    n = residuals.shape[1]
    position = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0) * n_grid
    left = np.minimum(np.floor(position).astype(np.int64), n_grid - 1)
    fraction = position - left
    # the period-2 grid: points 0..2N-1 stand for u = j / N; u and -u (= 2 - u) carry the same mass
    columns = np.concatenate([left, left + 1, (2 * n_grid - left) % (2 * n_grid), 2 * n_grid - left - 1])
    weights = np.concatenate([1 - fraction, fraction] * 2)
    deposit = sparse.csr_matrix((weights, (np.tile(np.arange(n), 4), columns)), shape=(n, 2 * n_grid))
    return np.fft.rfft(np.asarray(deposit.T @ residuals.T).T, axis=1)


def _smooth_ece_of_spectra(spectrum: np.ndarray, n: np.ndarray, sigma: float | None) -> np.ndarray:
    """(D,) smooth ECE of the sets whose residual spectra (:func:`_residual_spectra`) are the rows
    of ``spectrum``, ``n`` (D,) examples each: |smoothed residual| integrated over [0, 1] by the
    trapezoidal rule, at ``sigma`` or at the fixed point, bracketed by :func:`_decreasing_root`
    for all D at once."""
    n_grid = SMOOTH_GRID
    spacing = 1.0 / n_grid
    frequency = np.arange(spectrum.shape[1]) / 2.0  # cycles per unit length, period 2

    def smece(s: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        # frequencies whose multiplier is below e^-40 for every bandwidth in s are left out (zero)
        kept = len(frequency) if s.min() <= 0 else min(len(frequency), int(2 * np.sqrt(20) / (np.pi * s.min())) + 2)
        multiplier = np.exp(-2 * (np.pi * s[:, None] * frequency[:kept]) ** 2)
        smoothed = np.fft.irfft(spectrum[rows, :kept] * multiplier, n=2 * n_grid, axis=1)
        inside = np.abs(smoothed[:, : n_grid + 1]) / spacing
        return (inside.sum(axis=1) - (inside[:, 0] + inside[:, -1]) / 2) * spacing / n[rows]

    if sigma is not None:
        return smece(np.full(len(spectrum), float(sigma)))
    return _decreasing_root(lambda s, rows: smece(s, rows) - s, len(spectrum))


def _decreasing_root(g: Callable[[np.ndarray, np.ndarray], np.ndarray], d: int) -> np.ndarray:
    """The roots in [0, 1] of D decreasing functions (``g(x, rows)`` evaluates the functions
    ``rows`` at ``x``; g >= 0 at 0 and < 0 at 1), each bracketed to ``SMOOTH_TOLERANCE`` and
    returned as its bracket's midpoint: the guarantee of 40 bisection steps.

    Why not bisection: each evaluation is an inverse FFT of 8,192 points per row; 40 of them
    were two thirds of scoring a set (a cell scores about 120: sets x raw/TS) and most of a
    smooth-ECE bootstrap. The Illinois variant of regula falsi keeps the bracket and closes it
    in about a third of bisection's evaluations. Its points stay a quarter of the tolerance
    inside the bracket (so that the end it converges to can close it), and a row whose bracket
    did not halve in three steps takes a bisection step, so none needs more than four times
    bisection's steps. Rows already bracketed are not evaluated again.
    """
    every = np.arange(d)
    low, high = np.zeros(d), np.ones(d)
    g_low, g_high = g(low, every), g(high, every)
    high[g_low == 0] = 0.0  # the root is 0 itself
    side = np.zeros(d)  # +1: the last step moved low, -1: it moved high
    stalled = np.zeros(d, dtype=np.int64)  # steps since the bracket last halved
    reference = high - low  # the width it had then
    open_ = np.flatnonzero(high - low > SMOOTH_TOLERANCE)
    while len(open_):
        lo, hi, glo, ghi = low[open_], high[open_], g_low[open_], g_high[open_]
        x = np.clip((lo * ghi - hi * glo) / (ghi - glo), lo + SMOOTH_TOLERANCE / 4, hi - SMOOTH_TOLERANCE / 4)
        bisect = stalled[open_] >= 3
        x[bisect] = (lo[bisect] + hi[bisect]) / 2
        gx = g(x, open_)
        up = gx > 0
        repeat = np.where(up, 1.0, -1.0) == side[open_]
        # Illinois: the end kept a second time in a row has its value halved, so that it moves next
        g_low[open_] = np.where(up, gx, np.where(repeat, glo / 2, glo))
        g_high[open_] = np.where(up, np.where(repeat, ghi / 2, ghi), gx)
        low[open_] = np.where(up | (gx == 0), x, lo)
        high[open_] = np.where(up, hi, x)
        side[open_] = np.where(up, 1.0, -1.0)
        width = high[open_] - low[open_]
        halved = width <= reference[open_] / 2
        stalled[open_] = np.where(halved, 0, stalled[open_] + 1)
        reference[open_] = np.where(halved, width, reference[open_])
        open_ = open_[width > SMOOTH_TOLERANCE]
    return (low + high) / 2


def _check_norm(spec: MetricSpec, norm: str) -> None:
    if spec.norm != norm:
        raise ValueError(f"metric {spec.name!r} is defined with norm {norm!r}, got spec {spec.id}")


# -- binning ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin statistics for a reliability diagram; empty bins have count 0 and NaN means."""

    edges: np.ndarray  # (n_bins + 1,) bin b is (edges[b], edges[b + 1]]; the first also holds 0
    count: np.ndarray  # (n_bins,) examples per bin
    confidence: np.ndarray  # (n_bins,) mean confidence
    accuracy: np.ndarray  # (n_bins,) fraction correct


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15, strategy: str = "uniform") -> ReliabilityBins:
    """Top-label confidence and accuracy per bin, binned as ECE bins them."""
    edges, count, confidence, hits = _top_label_bins(Predictions.of(probs, labels), n_bins, strategy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ReliabilityBins(edges, count, confidence / count, hits / count)


def _bin_edges(n_bins: int, strategy: str, confidence: np.ndarray | None = None) -> np.ndarray:
    """The n_bins + 1 bin edges, from 0 to 1; ``quantile`` edges come from ``confidence``."""
    _require_int("n_bins", n_bins, minimum=1)
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        inner = np.quantile(confidence, np.arange(1, n_bins) / n_bins, method="inverted_cdf")
        return np.concatenate(([0.0], inner, [1.0]))
    raise ValueError(f"unknown binning strategy {strategy!r}; expected one of {STRATEGIES}")


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin b holds (edges[b], edges[b + 1]]; 0 goes to the first bin, 1.0 to the last. A value
    within the tie tolerance above an edge counts as on it (a normalised [0.8, 0.2] row is 12/15
    up to its last bit), so last-bit noise never moves a value across an edge."""
    return np.searchsorted(edges[1:-1], values - (TIE_RTOL * np.abs(values) + TIE_ATOL), side="left")


def _bin_sums(
    index: np.ndarray, values: np.ndarray, hits: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, ...]:
    """Per-bin count, summed values and number of hits, for flat bin ``index`` into ``shape``."""
    size = int(np.prod(shape))
    return tuple(np.bincount(index, weights=weights, minlength=size).reshape(shape) for weights in (None, values, hits))


def _top_label_bins(preds: Predictions, n_bins: int, strategy: str) -> tuple[np.ndarray, ...]:
    """Edges, then per-bin count, summed confidence and number correct; a tie group goes
    wholly into the bin of its largest confidence."""
    edges, index = _top_label_index(preds, n_bins, strategy)
    return (edges, *_bin_sums(index, preds.confidence, preds.correct, (n_bins,)))


def _top_label_index(preds: Predictions, n_bins: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and each example's bin, from the tie groups' confidences."""
    edges = _bin_edges(n_bins, strategy, preds.tied_confidence)
    return edges, _bin_index(preds.tied_confidence, edges)


def tie_representatives(values: np.ndarray) -> np.ndarray:
    """Each value replaced by the largest value of its tie group.

    Sorted values form one group while each is within ``TIE_RTOL`` (relative)
    plus ``TIE_ATOL`` of the next: values that differ only in their last bits,
    as the same stored probabilities scored on different machines may, are
    treated as equal, so bins and ranks never split them.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    step = np.diff(ordered) > TIE_RTOL * np.abs(ordered[1:]) + TIE_ATOL
    group = np.r_[0, np.cumsum(step)]
    largest = ordered[np.r_[np.flatnonzero(step), len(ordered) - 1]]
    out = np.empty_like(ordered)
    out[order] = largest[group]
    return out


# -- out-of-distribution detection -----------------------------------------------------


def ood_auroc(in_scores: Any, out_scores: Any) -> float:
    """AUROC of telling in-distribution from OOD examples by a score.

    In-distribution is the positive class and a higher score must mean "more
    in-distribution" (e.g. confidence; negate an entropy). The value is the
    probability that an in-distribution example outscores an OOD one, ties
    counting half (the Mann-Whitney U statistic over n_in * n_out). Ties are
    tie groups of the pooled scores (:func:`tie_representatives`), as in AURC.
    """
    positive, negative = _scores(in_scores, "in_scores"), _scores(out_scores, "out_scores")
    ranks = rankdata(tie_representatives(np.concatenate([positive, negative])))  # ties get their average rank
    n_pos, n_neg = len(positive), len(negative)
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _scores(scores: Any, name: str) -> np.ndarray:
    scores = _numpy(scores)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or not np.isfinite(scores).all():
        raise ValueError(f"{name} must be finite numbers (no NaN or infinity)")
    return scores.astype(np.float64, copy=False)


# -- floors: what a perfectly calibrated model with the same confidences would score ---


@dataclasses.dataclass(frozen=True)
class Floor:
    """A calibration score's floor: its mean (and spread) over labels drawn from the model's own
    probabilities, i.e. for a perfectly calibrated model with the same confidences and n.

    A calibration error within the floor is what sampling alone produces at this n."""

    spec: MetricSpec
    mean: float
    std: float
    quantile: float | None  # the ``level`` quantile of the simulated values (None if no level asked)
    level: float | None
    n_draws: int


CALIBRATION_METRICS = ("ece", "mce", "classwise_ece", "debiased_ce", "smooth_ece")  # spec names with a floor


def floor(
    spec: MetricSpec | str,
    probs: Any,
    *,
    seed: int,
    n_draws: int = 200,
    level: float | None = 0.95,
    predicted: Any = None,
) -> Floor:
    """The floor of metric ``spec`` for predictions ``probs`` (n, C), by simulation.

    Each of ``n_draws`` draws (from ``seed``) gives every example a label drawn
    from its own row of ``probs`` (rows renormalised to sum to 1), and scores the
    metric on the same probabilities with those labels. Top-label metrics (ECE,
    MCE, debiased CE, smooth ECE: :data:`FLOORS`) only need whether the label is
    the predicted class, drawn as Bernoulli(confidence), and score all draws at
    once; other metrics (classwise ECE, ...) score each draw in turn. ``predicted`` as in :meth:`Predictions.of`.
    """
    spec = MetricSpec.from_id(spec) if isinstance(spec, str) else spec
    if spec.name not in CALIBRATION_METRICS:
        raise ValueError(f"a floor is defined for calibration errors ({', '.join(CALIBRATION_METRICS)}), not {spec.id!r}")
    _require_int("seed", seed, minimum=0)
    _require_int("n_draws", n_draws, minimum=2)
    probs = _numpy(probs)
    preds = Predictions.of(probs, np.zeros(len(probs), dtype=np.int64), predicted)
    rng = np.random.default_rng(seed)
    uniform = rng.random((n_draws, len(preds.labels)))
    vectorised = FLOORS.get(spec.name) if spec.name in FLOORS else None
    if vectorised is not None:
        values = vectorised(preds, spec, uniform < preds.confidence)
    else:
        metric = METRICS.get(spec.name)
        cumulative = np.cumsum(preds.probs, axis=1, dtype=np.float64)
        cumulative /= cumulative[:, -1:]
        values = np.empty(n_draws)
        for d in range(n_draws):
            labels = np.minimum((uniform[d][:, None] >= cumulative).sum(axis=1), probs.shape[1] - 1)
            values[d] = metric(_with_labels(preds, labels), spec)
    quantile = None
    if level is not None:
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        quantile = float(np.quantile(values, level))
    return Floor(spec, float(values.mean()), float(values.std(ddof=1)), quantile, level, n_draws)


def _with_labels(preds: Predictions, labels: np.ndarray) -> Predictions:
    """``preds`` with other labels, keeping the label-free summaries already computed."""
    new = Predictions(preds.probs, labels, preds.given_predicted)
    for name in ("predicted", "confidence", "tied_confidence", "sq_norm"):
        new.__dict__[name] = getattr(preds, name)  # cached_property values live in __dict__
    return new


def _top_label_draws(preds: Predictions, spec: MetricSpec, correct: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-bin count (n_bins,), summed confidence (n_bins,) and hits (D, n_bins) for D draws of correctness."""
    _, index = _top_label_index(preds, spec.n_bins, spec.binning)
    onehot = np.zeros((len(index), spec.n_bins))
    onehot[np.arange(len(index)), index] = 1.0
    return onehot.sum(axis=0), preds.confidence @ onehot, correct.astype(np.float64) @ onehot


def _ece_draws(preds: Predictions, spec: MetricSpec, correct: np.ndarray) -> np.ndarray:
    _check_norm(spec, "l1")
    count, confidence, hits = _top_label_draws(preds, spec, correct)
    return np.abs(hits - confidence).sum(axis=1) / count.sum()


def _mce_draws(preds: Predictions, spec: MetricSpec, correct: np.ndarray) -> np.ndarray:
    _check_norm(spec, "max")
    count, confidence, hits = _top_label_draws(preds, spec, correct)
    full = count > 0
    return np.max(np.abs(hits[:, full] - confidence[full]) / count[full], axis=1)


def _debiased_draws(preds: Predictions, spec: MetricSpec, correct: np.ndarray) -> np.ndarray:
    _check_norm(spec, "l2sq")
    count, confidence, hits = _top_label_draws(preds, spec, correct)
    return _debiased_squared(count, confidence, hits)


# Top-label metrics scored on many draws of correctness (D, n) at once, for :func:`floor`.
FLOORS: Registry[Callable[[Predictions, MetricSpec, np.ndarray], np.ndarray]] = Registry("metric floor")
FLOORS.register("ece", _ece_draws)
FLOORS.register("mce", _mce_draws)
FLOORS.register("debiased_ce", _debiased_draws)
FLOORS.register("smooth_ece", lambda preds, spec, correct: _smooth_ece(preds.confidence, correct - preds.confidence, None))


# -- bootstrap -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    """A metric's estimate (averaged over seeds) and its percentile-bootstrap interval."""

    estimate: MetricValue
    low: float
    high: float
    level: float


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """metric(A) - metric(B), its percentile-bootstrap interval and two-sided p-value."""

    spec: MetricSpec
    difference: float
    low: float
    high: float
    p_value: float
    level: float


def bootstrap_interval(
    spec: MetricSpec,
    probs: Any,
    labels: Any,
    *,
    seed: int,
    n_resamples: int = 1000,
    level: float = 0.95,
    groups: Any = None,
) -> Interval:
    """Percentile-bootstrap interval of one method's metric.

    ``probs`` is (n, C), or (n_seeds, n, C) for several training seeds scored on the
    same n examples; then seeds and examples are both resampled and the estimate
    is the mean over seeds. ``groups`` (n,) makes it a cluster bootstrap: examples
    of one group (e.g. the corrupted copies of one test text) are drawn together.
    """
    estimates, replicates = _replicates(spec, [_per_seed(probs, labels)], seed, n_resamples, groups)
    low, high = _percentiles(replicates[:, 0], level)
    return Interval(MetricValue(float(estimates[0]), spec), low, high, level)


def paired_bootstrap(
    spec: MetricSpec,
    probs_a: Any,
    probs_b: Any,
    labels: Any,
    *,
    seed: int,
    n_resamples: int = 1000,
    level: float = 0.95,
    groups: Any = None,
) -> PairedDifference:
    """Paired bootstrap test of metric(A) - metric(B) on the same examples.

    ``probs_a`` and ``probs_b`` are (n, C), or (n_seeds, n, C) with seed i of A
    paired with seed i of B. Each resample draws seeds and examples (or ``groups``
    of examples, as in :func:`bootstrap_interval`) with replacement, the same
    draws for both methods. The p-value inverts the percentile interval
    (:func:`difference_interval`), so p < 1 - level about when the interval excludes 0.
    """
    a, b = _per_seed(probs_a, labels), _per_seed(probs_b, labels)
    if len(a) != len(b):
        raise ValueError(f"methods A and B must have the same number of seeds, got {len(a)} and {len(b)}")
    estimates, replicates = _replicates(spec, [a, b], seed, n_resamples, groups)
    low, high, p_value = difference_interval(replicates[:, 0] - replicates[:, 1], level)
    return PairedDifference(spec, float(estimates[0] - estimates[1]), low, high, p_value, level)


def difference_interval(differences: np.ndarray, level: float) -> tuple[float, float, float]:
    """Percentile interval of bootstrap replicates of a difference, and the two-sided p-value
    that inverts it: 2 * min(P*(d <= 0), P*(d >= 0)) with add-one smoothing, capped at 1."""
    low, high = _percentiles(differences, level)
    tail = min(np.count_nonzero(differences <= 0), np.count_nonzero(differences >= 0))
    return low, high, min(1.0, 2 * (tail + 1) / (len(differences) + 1))


def bootstrap_replicates(
    spec: MetricSpec, probs: Sequence[Any], labels: Any, *, seed: int, n_resamples: int = 1000, groups: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each method's seed-averaged metric (k,) and (n_resamples, k) replicates, for ``k`` methods
    whose ``probs`` ((n, C) or (n_seeds, n, C) each, the same seeds) are scored on the same
    examples; every replicate uses the same draws for all methods. For statistics built on
    several bootstraps (a mean over tasks, the worst of several shifts)."""
    per_method = [_per_seed(p, labels) for p in probs]
    if len({len(p) for p in per_method}) != 1:
        raise ValueError(f"every method needs the same number of seeds, got {[len(p) for p in per_method]}")
    return _replicates(spec, per_method, seed, n_resamples, groups)


def _per_seed(probs: Any, labels: Any) -> list[Predictions]:
    probs = _numpy(probs)
    return [Predictions.of(p, labels) for p in probs] if probs.ndim == 3 else [Predictions.of(probs, labels)]


def _replicates(
    spec: MetricSpec, methods: list[list[Predictions]], seed: int, n_resamples: int, groups: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each method's seed-averaged metric, and (n_resamples, n_methods) bootstrap replicates.

    A replicate draws seeds, and groups of examples, with replacement, the same
    draws for all methods. It is held as how often each example was drawn, so
    that metrics with a weighted form (:data:`WEIGHTED`) score all replicates
    with a few matrix products; the others score each resample in turn.
    """
    _require_int("seed", seed, minimum=0)  # None would draw fresh OS entropy: not reproducible
    _require_int("n_resamples", n_resamples, minimum=1)
    metric = METRICS.get(spec.name)
    estimates = np.array([np.mean([metric(p, spec) for p in seeds]) for seeds in methods])
    n_seeds, n = len(methods[0]), len(methods[0][0].labels)
    group_of = np.arange(n) if groups is None else np.unique(_numpy(groups), return_inverse=True)[1].reshape(-1)
    if group_of.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {np.shape(groups)}")
    n_groups = int(group_of.max()) + 1
    rng = np.random.default_rng(seed)
    seed_weights = np.empty((n_resamples, n_seeds))
    counts = np.empty((n_resamples, n))
    for r in range(n_resamples):
        seed_weights[r] = np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds) / n_seeds
        counts[r] = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[group_of]
    weighted = WEIGHTED.get(spec.name) if spec.name in WEIGHTED else None
    replicates = np.empty((n_resamples, len(methods)))
    for m, seeds in enumerate(methods):
        if weighted is not None and weighted.fits(spec):
            per_seed = np.stack([weighted(p, spec, counts) for p in seeds], axis=1)
            replicates[:, m] = (per_seed * seed_weights).sum(axis=1)
            continue
        for r in range(n_resamples):
            rows = np.repeat(np.arange(n), counts[r].astype(np.int64))
            replicates[r, m] = sum(w * metric(seeds[s].take(rows), spec) for s, w in enumerate(seed_weights[r]) if w)
    return estimates, replicates


# -- weighted forms: a metric on every resample at once, from example counts (R, n) -----


@dataclasses.dataclass(frozen=True)
class Weighted:
    """A metric's value on R resamples given as example counts; ``fits`` says for which specs."""

    function: Callable[[Predictions, MetricSpec, np.ndarray], np.ndarray]
    fits: Callable[[MetricSpec], bool] = lambda spec: True

    def __call__(self, preds: Predictions, spec: MetricSpec, counts: np.ndarray) -> np.ndarray:
        return self.function(preds, spec, counts)


def _mean_of(per_example: Callable[[Predictions], np.ndarray]) -> Weighted:
    return Weighted(lambda preds, spec, counts: counts @ per_example(preds) / counts.sum(axis=1))


def _uniform_bins(preds: Predictions, spec: MetricSpec, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(R, n_bins) count, summed confidence and hits of top-label bins, per resample."""
    _, index = _top_label_index(preds, spec.n_bins, "uniform")
    onehot = np.zeros((len(index), spec.n_bins))
    onehot[np.arange(len(index)), index] = 1.0
    return counts @ onehot, counts @ (onehot * preds.confidence[:, None]), counts @ (onehot * preds.correct[:, None])


def _weighted_ece(preds: Predictions, spec: MetricSpec, counts: np.ndarray) -> np.ndarray:
    _, confidence, hits = _uniform_bins(preds, spec, counts)
    return np.abs(hits - confidence).sum(axis=1) / counts.sum(axis=1)


def _weighted_mce(preds: Predictions, spec: MetricSpec, counts: np.ndarray) -> np.ndarray:
    count, confidence, hits = _uniform_bins(preds, spec, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmax(np.where(count > 0, np.abs(hits - confidence) / count, np.nan), axis=1)


def _weighted_smooth_ece(preds: Predictions, spec: MetricSpec, counts: np.ndarray) -> np.ndarray:
    """Smooth ECE of each resample: a resampled example's residual deposited ``count`` times,
    rescaled so that dividing by n divides by the resample's size. In chunks of resamples."""
    residuals = counts * (preds.correct - preds.confidence) * (len(preds.confidence) / counts.sum(axis=1, keepdims=True))
    chunks = range(0, len(counts), 200)  # (200, 8192) float64 arrays per FFT: ~13 MB
    return np.concatenate([_smooth_ece(preds.confidence, residuals[i : i + 200], None) for i in chunks])


def _uniform(spec: MetricSpec) -> bool:
    return spec.binning == "uniform"


WEIGHTED: Registry[Weighted] = Registry("weighted metric")
WEIGHTED.register("accuracy", _mean_of(lambda p: p.correct.astype(np.float64)))
WEIGHTED.register("nll", _mean_of(lambda p: -np.log(np.maximum(p.true_prob, NLL_EPS))))
WEIGHTED.register("brier", _mean_of(lambda p: p.sq_norm - 2 * p.true_prob + 1))
WEIGHTED.register("mean_confidence", _mean_of(lambda p: p.confidence))
WEIGHTED.register("ece", Weighted(_weighted_ece, _uniform))
WEIGHTED.register("mce", Weighted(_weighted_mce, _uniform))
WEIGHTED.register("smooth_ece", Weighted(_weighted_smooth_ece))
WEIGHTED.register("debiased_ce", Weighted(lambda preds, spec, counts: _debiased_squared(*_uniform_bins(preds, spec, counts)), _uniform))


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# -- input validation ------------------------------------------------------------------


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like or a (detached, CPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _checked(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` as float32/float64 and ``labels`` as int64, or a ValueError saying what is wrong.

    Cheap on large inputs: one row-sum pass (NaN and infinity show up in the sums)
    and one min and one max pass; no float64 copy of probs.
    """
    probs, labels = _numpy(probs), _numpy(labels)
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (n, C) with n >= 1 and C >= 2, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probs must be floating point, got dtype {probs.dtype}")
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float32)  # float16 rows cannot be summed precisely enough
    n, n_classes = probs.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match probs {probs.shape}, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}), got values from {labels.min()} to {labels.max()}")
    sums = probs.sum(axis=1)
    if not np.isfinite(sums).all():
        row = np.flatnonzero(~np.isfinite(sums))[0]
        raise ValueError(f"probs contain NaN or infinity (first in row {row})")
    low, high = probs.min(), probs.max()
    if low < 0 or high > 1:
        raise ValueError(f"probs must be in [0, 1], got values from {low} to {high}")
    off = np.abs(sums - 1) > SUM_ATOL
    if off.any():
        row = np.flatnonzero(off)[0]
        raise ValueError(f"each row of probs must sum to 1 within {SUM_ATOL}; row {row} sums to {sums[row]:.6g}")
    return probs, labels.astype(np.int64, copy=False)
