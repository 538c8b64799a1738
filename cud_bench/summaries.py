"""Per-row summaries of a shifted set's predictions: what its metrics need, and no more.

Release 2.0's corrupted sets (50 sets of 300 texts per cell) hold 97% of its per-example rows;
stored as float16 probability rows they would make the release about 470 MB
(docs/release-2.0.md), over any size a repository should hold. A set of a summarised family
therefore keeps, per row, the predicted class and its confidence raw and after post-hoc TS,
each confidence as the index of one of ``CELLS`` equal cells of (0, 1]. The run scores these
sets from the summary (:func:`scores`), and a release recomputes the same numbers from the same
summary, so record, entry and verification agree.

What a summary decides: the predicted class and whether it is right, and the confidence to
within half a cell (1/480). So it scores accuracy, macro-F1, ECE and MCE in uniform bins whose
edges are cell edges, smooth ECE and mean confidence (:data:`SPECS`), each within 1/480 of its
value on the float16 rows. Not scored on a summary: NLL, Brier and classwise ECE (they need
every class's probability), and the metrics that order confidences: quantile-binned ECE and
debiased CE, AURC (confidences in one cell are one tie group, which merges quantile bins and
loses the ranking within a cell; measured on release 2.0's first 540 cells, quantile ECE moved
by up to 0.05 on a set, AURC by 0.026, where uniform ECE moved by at most 0.0005). They are
scored on the sets stored whole (clean, its subsets, domain and held-out sets).

The cells are (k-1)/CELLS < c <= k/CELLS; 240 = 15 x 16, so every edge of the 15 uniform bins
is a cell edge and a confidence falls in the same uniform bin before and after. A cell stands
for the midpoint of the part of it a confidence can reach (at least 1/C): unbiased, and above
1/C unless the row was uniform, so the predicted class stays the most probable one in the rows
:meth:`Summary.rows` rebuilds. Reading a cell back is exactly rounded IEEE arithmetic, the same on
any machine; the cells themselves are stored, so the scores never depend on how TS was computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from cud_bench import calibration, metrics

CELLS = 240  # 15 x 16: the uniform 15-bin edges are cell edges (see the module docstring)
FAMILIES = frozenset({"corruption"})  # shift families whose labelled sets are stored as summaries
VARIANTS = ("raw", "ts")  # the columns of Summary.codes
DECIDED = ("accuracy", "macro_f1", "ece", "mce", "smooth_ece", "mean_confidence")  # metric names a summary decides


def decides(spec: metrics.MetricSpec) -> bool:
    """Whether a summary scores ``spec`` within half a cell: a metric of :data:`DECIDED`, binned (if
    at all) in uniform bins whose edges are cell edges."""
    return spec.name in DECIDED and (spec.binning is None or (spec.binning == "uniform" and CELLS % spec.n_bins == 0))


SPECS: tuple[metrics.MetricSpec, ...] = tuple(s for s in metrics.STANDARD_SPECS if decides(s))


def summarised(family: str, kind: str) -> bool:
    """Whether a set of this shift family and kind is stored and scored as a summary."""
    return family in FAMILIES and kind == "labelled"


@dataclasses.dataclass(frozen=True, eq=False)
class Summary:
    """One set's summary: (n,) predicted classes, (n, 2) uint8 confidence cells (raw, ts), C."""

    predicted: np.ndarray
    codes: np.ndarray
    n_classes: int

    def confidence(self, variant: str) -> np.ndarray:
        """(n,) the confidence each cell stands for (float64)."""
        k = self.codes[:, VARIANTS.index(variant)].astype(np.float64)
        low = np.maximum((k - 1) / CELLS, 1.0 / self.n_classes)
        return (low + k / CELLS) / 2

    def rows(self, variant: str) -> np.ndarray:
        """(n, C) float64 rows with the variant's confidence on the predicted class and the rest
        spread evenly: for the statistics that take probability rows. Only :data:`SPECS` may be
        scored on them."""
        c = self.confidence(variant)
        rows = np.repeat(((1 - c) / (self.n_classes - 1))[:, None], self.n_classes, axis=1)
        rows[np.arange(len(c)), self.predicted] = c
        return rows


def summarise(probs: np.ndarray, temperature: float) -> Summary:
    """The summary of stored float16 ``probs`` (n, C): the stored argmax, and the cells of its
    probability as :func:`cud_bench.scoring.scores` takes it, raw and after TS at ``temperature``."""
    predicted = np.asarray(probs).argmax(axis=1)
    at = np.arange(len(predicted))
    confidences = [calibration.variant_probs(probs, temperature, v)[at, predicted] for v in VARIANTS]
    # A confidence within the metrics' tie tolerance above a cell edge is on the edge, as for bins.
    cells = [np.ceil(c * CELLS * (1 - metrics.TIE_RTOL) - metrics.TIE_ATOL) for c in confidences]
    codes = np.stack([np.clip(k, 1, CELLS) for k in cells], axis=1).astype(np.uint8)
    return Summary(predicted.astype(np.int64), codes, int(np.shape(probs)[1]))


def scores(summary: Summary, labels: np.ndarray, specs: Sequence[metrics.MetricSpec] = SPECS) -> dict[str, Any]:
    """``specs`` (some of :data:`SPECS`) on a summary, raw and after TS, in the layout of
    :func:`cud_bench.scoring.scores`."""
    return scores_of_sets([(summary, labels)], specs)[0]


def scores_of_sets(sets: Sequence[tuple[Summary, np.ndarray]], specs: Sequence[metrics.MetricSpec] = SPECS) -> list[dict[str, Any]]:
    """:func:`scores` of several (summary, labels) sets: the same numbers, with the smooth ECE of
    every set and variant found together (:func:`cud_bench.metrics.smooth_ece_of_sets`), which a
    set at a time was two thirds of a cell's scoring and of a release's verification."""
    refused = [s.id for s in specs if not decides(s)]
    if refused:
        raise ValueError(
            f"{refused}: a summarised set keeps only the predicted class's confidence, to within a cell; "
            f"it scores {[s.id for s in SPECS]}"
        )
    preds = [metrics.Predictions.of(summary.rows(v), labels, summary.predicted) for summary, labels in sets for v in VARIANTS]
    smooth = metrics.smooth_ece_of_sets([p.confidence for p in preds], [p.correct for p in preds]) if any(s.name == "smooth_ece" for s in specs) else None
    values = [{s.id: float(smooth[i]) if s.name == "smooth_ece" else metrics.evaluate(s, p).value for s in specs} for i, p in enumerate(preds)]
    per_set = len(VARIANTS)
    return [
        {**dict(zip(VARIANTS, values[i * per_set : (i + 1) * per_set], strict=True)), "n": int(len(labels))}
        for i, (_, labels) in enumerate(sets)
    ]


def concatenate(parts: list[Summary]) -> Summary:
    """Several sets' summaries as one (a family's pool)."""
    return Summary(
        np.concatenate([p.predicted for p in parts]), np.concatenate([p.codes for p in parts]), parts[0].n_classes
    )
