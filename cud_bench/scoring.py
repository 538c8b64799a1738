"""Scoring a trained model: the clean test set and every shifted set, raw and after post-hoc TS.

The temperature is fitted on clean validation data only and reused under shift, never refitted.
Scores are computed from the float16 probabilities that are stored (:func:`stored_probs`), so a
record's numbers and a release's recomputed ones come from the same inputs and code.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from cud_bench import calibration, metrics, summaries
from cud_bench.models.architectures import Architecture
from cud_bench.specs import MetricSpec
from cud_bench.suites import SuiteSpec
from cud_bench.taskdata import Inputs, TaskData
from cud_bench.train import predict_logits

if TYPE_CHECKING:
    from shifts import TeacherProbs

ECE = "ece/uniform/15/l1"


def stored_probs(logits: np.ndarray) -> np.ndarray:
    """The float16 probabilities a run stores for ``logits``, and the only input of its scores."""
    return calibration.apply_temperature(logits, 1.0).astype(np.float16)


def stored_logits(logits: np.ndarray) -> np.ndarray:
    """The float16 validation logits a run stores, from which a release re-fits the temperature
    (:func:`cud_bench.calibration.refit_problem`): each row minus its maximum (softmax and the
    fitted temperature do not change; float16 then keeps 11 significant bits of each logit's
    distance from the top one, however large the logits)."""
    z = np.asarray(logits, dtype=np.float32)
    return (z - z.max(axis=1, keepdims=True)).astype(np.float16)


def scores(
    probs: np.ndarray, labels: np.ndarray, temperature: float, specs: Sequence[MetricSpec] = metrics.STANDARD_SPECS
) -> dict[str, Any]:
    """Every metric in ``specs``, raw and after post-hoc temperature scaling (T fitted on clean
    validation data), from the stored float16 ``probs`` (:func:`stored_probs`).

    Raw scores use the stored values widened exactly to float64 and normalised
    (:func:`cud_bench.calibration.normalise_stored`: bit-identical everywhere);
    "ts" scores use :func:`cud_bench.calibration.scale_stored`; both take the
    stored argmax as the predicted class. The runner's records and a release's
    recomputation go through this one function, so they agree exactly on one
    machine and to well under 1e-6 across machines (the metrics' tie groups
    absorb the last-bit noise of numpy's SIMD ``power``).
    """
    probs = _stored(probs)
    raw, ts = (calibration.variant_probs(probs, temperature, v) for v in ("raw", "ts"))
    predicted = probs.argmax(axis=1)
    return {
        "raw": {k: v.value for k, v in metrics.compute_all(raw, labels, specs, predicted).items()},
        "ts": {k: v.value for k, v in metrics.compute_all(ts, labels, specs, predicted).items()},
        "temperature": temperature,
        "n": int(len(labels)),
    }


def floors(
    probs: np.ndarray,
    temperature: float,
    specs: Sequence[MetricSpec] = metrics.STANDARD_SPECS,
    *,
    seed: int,
    n_draws: int = 200,
    level: float | None = 0.95,
) -> dict[str, dict[str, metrics.Floor]]:
    """``{"raw"|"ts": {metric id: Floor}}`` for the calibration metrics among ``specs``, on the
    stored float16 ``probs``, each variant's probabilities as :func:`scores` scores them."""
    probs = _stored(probs)
    predicted = probs.argmax(axis=1)
    chosen = [s for s in specs if s.name in metrics.CALIBRATION_METRICS]
    return {
        variant: {
            s.id: metrics.floor(s, p, seed=seed, n_draws=n_draws, level=level, predicted=predicted) for s in chosen
        }
        for variant, p in ((v, calibration.variant_probs(probs, temperature, v)) for v in ("raw", "ts"))
    }


def ood_scores(in_probs: np.ndarray, out_probs: np.ndarray, temperature: float) -> dict[str, Any]:
    """Out-of-scope detection from stored float16 probabilities: AUROC of max-probability and of
    negative entropy (in-scope = positive), and the mean confidence on out-of-scope inputs; raw
    and after post-hoc temperature scaling, each computed as in :func:`scores`."""
    in_probs, out_probs = _stored(in_probs, "in_probs"), _stored(out_probs, "out_probs")

    def one(T: float | None) -> dict[str, float]:
        variant = "raw" if T is None else "ts"
        p_in, p_out = (calibration.variant_probs(p, T, variant) for p in (in_probs, out_probs))
        msp_in, msp_out = (_top(p, stored) for p, stored in ((p_in, in_probs), (p_out, out_probs)))
        values = (metrics.ood_auroc(msp_in, msp_out), metrics.ood_auroc(-_entropy(p_in), -_entropy(p_out)), float(msp_out.mean()))
        return dict(zip(metrics.DETECTION_METRICS, values, strict=True))

    return {"raw": one(None), "ts": one(temperature), "temperature": temperature, "n": int(len(out_probs))}


def _top(probs: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """(n,) the probability of the stored argmax (the predicted class, raw and after TS)."""
    return probs[np.arange(len(probs)), stored.argmax(axis=1)]


def _entropy(p: np.ndarray) -> np.ndarray:
    """Row entropies in nats, ``-sum p ln p`` (0 ln 0 = 0), the same for equal rows wherever they
    are: the logarithm is taken once per distinct value and each row summed in sorted order."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = calibration.per_value(lambda v: np.where(v > 0, -v * np.log(v), 0.0), p)
    return calibration.sorted_row_sum(terms)


def _stored(probs: Any, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs)
    if probs.dtype != np.float16 or probs.ndim != 2:
        raise ValueError(
            f"{name} must be the stored float16 probabilities (n, C) (scoring.stored_probs(logits)), got {probs.dtype} {probs.shape}"
        )
    return probs


class ShiftSets:
    """The suite's shifted evaluation sets for one task, built once and shared by every cell.

    Every shift is given the splits the suite uses (its capped test split and the
    training labels its models learn from) and the suite's ``max_shift_examples``;
    subset shifts are mapped onto the scored test split by example id. A clean
    reference shift (``reference_for``, e.g. ``corruption-clean``) is added whenever a
    shift of its family is scored. A set is not scored when it has fewer than the
    suite's ``min_set_size`` examples (:data:`cud_bench.suites.MIN_SET_SIZE`, whose comment says
    why) or is a subset equal to the whole clean test set
    (a class-frequency bucket on a balanced task): ``not_scored`` says which and why.
    """

    def __init__(self, suite: SuiteSpec, data: TaskData, teacher_probs: Callable[[], TeacherProbs]) -> None:
        from shifts import ScoredSplits

        self.data = data
        self.sets: list[Any] = []
        self.not_scored: dict[str, str] = {}  # "<shift id>/<severity>" -> why it was not scored
        self.rows: dict[str, np.ndarray] = {}  # a labelled set made from clean test rows -> those rows
        self.summarised: set[str] = set()  # shift ids whose sets are scored from per-row summaries
        splits = ScoredSplits(data.test.ids, data.test.texts, data.test.labels, data.train.labels)
        position = {id_: i for i, id_ in enumerate(data.test.ids)}
        for shift in self.chosen(suite, data.spec.name):
            spec = shift.spec
            extra = {"teacher_probs": teacher_probs()} if "teacher_probs" in spec.requires else {}
            for severity in spec.severities:
                shifted = shift.apply(
                    data.spec.name, severity, seed=0, splits=splits, max_examples=suite.max_shift_examples, **extra
                )
                set_id = f"{shifted.shift}/{severity}"
                if summaries.summarised(spec.family, shifted.kind):
                    self.summarised.add(shifted.shift)
                if shifted.kind == "subset":
                    rows = np.array([position[i] for i in shifted.ids if i in position], dtype=np.int64)
                    shifted = dataclasses.replace(shifted, ids=tuple(data.test.ids[r] for r in rows), indices=tuple(rows))
                elif shifted.kind == "labelled" and len(shifted) and all(i in position for i in shifted.ids):
                    self.rows[set_id] = np.array([position[i] for i in shifted.ids], dtype=np.int64)
                if len(shifted) < suite.min_set_size:
                    self.not_scored[set_id] = f"{len(shifted)} examples, below the minimum of {suite.min_set_size}"
                elif shifted.kind == "subset" and len(shifted) == len(data.test.ids):
                    self.not_scored[set_id] = "equals the clean test set"
                else:
                    self.sets.append(shifted)

    @staticmethod
    def chosen(suite: SuiteSpec, task: str) -> list[Any]:
        """The shifts scored on ``task``: the suite's that apply to it, plus the clean reference of each chosen family."""
        from shifts import shifts

        applicable = [shift for _, shift in shifts.items() if shift.applies_to(task)]
        chosen = [s for s in applicable if s.spec.family in suite.shifts or s.spec.name in suite.shifts]
        families = {s.spec.family for s in chosen}
        return chosen + [s for s in applicable if s.reference_for in families and s not in chosen]

    @staticmethod
    def needs_teacher_probs(suite: SuiteSpec, task: str) -> bool:
        """Whether building ``task``'s sets calls ``teacher_probs`` (the ensemble's teachers): an executor trains them first."""
        return any("teacher_probs" in shift.spec.requires for shift in ShiftSets.chosen(suite, task))

    @property
    def shift_ids(self) -> list[str]:
        """The versioned ids of the shifts scored for this task, sorted."""
        return sorted({shifted.shift for shifted in self.sets})

    def encode(self, arch: Architecture, inputs: Inputs) -> None:
        """Prepare ``arch``'s inputs of the clean splits and of every set with texts of its own, in
        the order training and scoring ask for them (so each text is encoded in the batch it always
        was): a stage of its own, where it was hidden in the first cell's scoring."""
        for texts in (self.data.train.texts, self.data.validation.texts, self.data.test.texts):
            inputs(arch, texts)
        for shifted in self.sets:
            if shifted.kind != "subset":
                inputs(arch, shifted.texts)

    def score(
        self, arch: Architecture, model: torch.nn.Module, test_logits: np.ndarray, T: float, inputs: Inputs
    ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
        """Scores per ``{shift id: {severity: Scores}}`` and the per-example probabilities to store.

        Sets of a summarised family (:mod:`cud_bench.summaries`) are scored from their summary,
        as a release stores them; the run's record keeps their probabilities whole."""
        results: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        predictions: dict[str, np.ndarray] = {}
        summarised: dict[tuple[str, str], tuple[summaries.Summary, np.ndarray]] = {}  # scored together below
        test_probs = stored_probs(test_logits)
        for shifted in self.sets:
            key = f"shift/{shifted.shift}/{shifted.severity}"
            if shifted.kind == "subset":
                rows = np.asarray(shifted.indices, dtype=np.int64)
                results[shifted.shift][str(shifted.severity)] = {
                    **scores(test_probs[rows], self.data.test.labels[rows], T),
                    "kind": "subset",
                }
                predictions[f"{key}/rows"] = rows
                continue
            probs = stored_probs(predict_logits(arch, model, inputs(arch, shifted.texts)))
            if shifted.kind == "labelled":
                labels = np.asarray(shifted.labels, dtype=np.int64)
                if shifted.shift in self.summarised:  # stored whole here; a release keeps the summary
                    summarised[shifted.shift, str(shifted.severity)] = (summaries.summarise(probs, T), labels)
                else:
                    results[shifted.shift][str(shifted.severity)] = {**scores(probs, labels, T), "kind": "labelled"}
                predictions[f"{key}/labels"] = labels
                if f"{shifted.shift}/{shifted.severity}" in self.rows:  # the clean rows the texts came from
                    predictions[f"{key}/rows"] = self.rows[f"{shifted.shift}/{shifted.severity}"]
            else:
                results[shifted.shift][str(shifted.severity)] = {**ood_scores(test_probs, probs, T), "kind": "out-of-scope"}
            predictions[f"{key}/probs"] = probs
        for (shift, severity), result in zip(summarised, summaries.scores_of_sets(list(summarised.values())), strict=True):
            results[shift][severity] = {**result, "temperature": T, "stored": "summary", "kind": "labelled"}
        return dict(results), predictions


def corruption_summary(shift_scores: dict[str, dict[str, Any]], clean_ece: float) -> dict[str, Any] | None:
    """Mean and worst ECE over corruptions and the area under ECE against severity (raw and post-TS)."""
    from shifts import corruption_figures, get_shift

    corrupt = {
        name: by_sev
        for name, by_sev in shift_scores.items()
        if get_shift(name).spec.family == "corruption" and get_shift(name).spec.kind == "labelled"
    }
    if not corrupt:
        return None
    out = {}
    for variant in ("raw", "ts"):
        grid = {(name, int(sev)): s[variant][ECE] for name, by_sev in corrupt.items() for sev, s in by_sev.items()}
        fig = corruption_figures(grid, clean=clean_ece if variant == "raw" else None)
        out[variant] = {"mean_ece": fig.mean, "worst_ece": fig.worst, "worst_at": list(fig.worst_at), "ece_severity_auc": fig.auc}
    return out
