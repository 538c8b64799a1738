"""Scoring a trained model: the clean test set and every shifted set, raw and after post-hoc TS.

The temperature is fitted on clean validation data only and reused under shift, never refitted.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from cud_bench import calibration, metrics
from cud_bench.models.architectures import Architecture
from cud_bench.suites import SuiteSpec
from cud_bench.taskdata import Inputs, TaskData
from cud_bench.train import predict_logits

if TYPE_CHECKING:
    from shifts import TeacherProbs

ECE = "ece/uniform/15/l1"


def scores(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """Every standard metric raw and after post-hoc temperature scaling (T fitted on clean validation data)."""
    raw = calibration.apply_temperature(logits, 1.0)
    ts = calibration.apply_temperature(logits, temperature)
    return {
        "raw": {k: v.value for k, v in metrics.compute_all(raw, labels).items()},
        "ts": {k: v.value for k, v in metrics.compute_all(ts, labels).items()},
        "temperature": temperature,
        "n": int(len(labels)),
    }


def ood_scores(in_logits: np.ndarray, out_logits: np.ndarray, temperature: float) -> dict[str, Any]:
    """Out-of-scope detection: AUROC of max-probability and of negative entropy (in-scope = positive),
    and the mean confidence on out-of-scope inputs; raw and after post-hoc temperature scaling."""

    def one(T: float) -> dict[str, float]:
        p_in, p_out = calibration.apply_temperature(in_logits, T), calibration.apply_temperature(out_logits, T)
        return {
            "ood_auroc/msp": metrics.ood_auroc(p_in.max(1), p_out.max(1)),
            "ood_auroc/entropy": metrics.ood_auroc(-_entropy(p_in), -_entropy(p_out)),
            "ood_mean_confidence": float(p_out.max(1).mean()),
        }

    return {"raw": one(1.0), "ts": one(temperature), "temperature": temperature, "n": int(len(out_logits))}


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


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
        from shifts import ScoredSplits, shifts

        self.data = data
        self.sets: list[Any] = []
        self.not_scored: dict[str, str] = {}  # "<shift id>/<severity>" -> why it was not scored
        self.rows: dict[str, np.ndarray] = {}  # a labelled set made from clean test rows -> those rows
        splits = ScoredSplits(data.test.ids, data.test.texts, data.test.labels, data.train.labels)
        position = {id_: i for i, id_ in enumerate(data.test.ids)}
        applicable = [shift for _, shift in shifts.items() if shift.applies_to(data.spec.name)]
        chosen = [s for s in applicable if s.spec.family in suite.shifts or s.spec.name in suite.shifts]
        families = {s.spec.family for s in chosen}
        chosen += [s for s in applicable if s.reference_for in families and s not in chosen]
        for shift in chosen:
            spec = shift.spec
            extra = {"teacher_probs": teacher_probs()} if "teacher_probs" in spec.requires else {}
            for severity in spec.severities:
                shifted = shift.apply(
                    data.spec.name, severity, seed=0, splits=splits, max_examples=suite.max_shift_examples, **extra
                )
                set_id = f"{shifted.shift}/{severity}"
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

    @property
    def shift_ids(self) -> list[str]:
        """The versioned ids of the shifts scored for this task, sorted."""
        return sorted({shifted.shift for shifted in self.sets})

    def score(
        self, arch: Architecture, model: torch.nn.Module, test_logits: np.ndarray, T: float, inputs: Inputs
    ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
        """Scores per ``{shift id: {severity: Scores}}`` and the per-example probabilities to store."""
        results: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        predictions: dict[str, np.ndarray] = {}
        for shifted in self.sets:
            key = f"shift/{shifted.shift}/{shifted.severity}"
            if shifted.kind == "subset":
                rows = np.asarray(shifted.indices, dtype=np.int64)
                results[shifted.shift][str(shifted.severity)] = {
                    **scores(test_logits[rows], self.data.test.labels[rows], T),
                    "kind": "subset",
                }
                predictions[f"{key}/rows"] = rows
                continue
            logits = predict_logits(arch, model, inputs(arch, shifted.texts))
            if shifted.kind == "labelled":
                labels = np.asarray(shifted.labels, dtype=np.int64)
                results[shifted.shift][str(shifted.severity)] = {**scores(logits, labels, T), "kind": "labelled"}
                predictions[f"{key}/labels"] = labels
                if f"{shifted.shift}/{shifted.severity}" in self.rows:  # the clean rows the texts came from
                    predictions[f"{key}/rows"] = self.rows[f"{shifted.shift}/{shifted.severity}"]
            else:
                results[shifted.shift][str(shifted.severity)] = {**ood_scores(test_logits, logits, T), "kind": "out-of-scope"}
            predictions[f"{key}/probs"] = calibration.apply_temperature(logits, 1.0)
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
