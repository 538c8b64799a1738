"""The testbed rule: gains read from stored validation logits, the carrying count and the choice, on constructed records."""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench.errors import CudBenchError
from cud_bench.records import CellKey, write_record
from cud_bench.testbed import TestbedSpec, choose, gains, teacher_accuracy, to_markdown

TASKS = ("rt-polarity", "tweets-airline", "bbc-news")


def _logits(labels: np.ndarray, n_right: int) -> np.ndarray:
    """Two-class logits that are right on the first ``n_right`` examples and wrong on the rest."""
    logits = np.zeros((len(labels), 2), dtype=np.float32)
    pred = np.where(np.arange(len(labels)) < n_right, labels, 1 - labels)
    logits[np.arange(len(labels)), pred] = 1.0
    return logits


def _write(out, spec: TestbedSpec, teacher: str, right: dict[tuple[str, str, int], int]) -> None:
    labels = np.array([0, 1] * 50)
    for (task, method, seed), n_right in right.items():
        cell = CellKey(spec.suite(teacher).name, task, method, seed, "cross-fit", "mlp-l3")
        teacher_logits = {"teacher/validation/logits": _logits(labels, 90 + seed)} if method == "kd" else {}
        write_record(out, cell, {}, {"validation/logits": _logits(labels, n_right), "validation/labels": labels, **teacher_logits})


def test_gains_are_kd_minus_ce_in_points_from_the_stored_validation_logits(tmp_path):
    spec = TestbedSpec(teachers=("mlp-l6",), students=("mlp-l3",), protocols=("cross-fit",), tasks=TASKS, seeds=(0, 1), min_tasks=2)
    right = {}
    for task, (kd, ce) in zip(TASKS, [((60, 62), (50, 50)), ((55, 50), (50, 50)), ((40, 40), (50, 50))]):
        for seed in (0, 1):
            right[task, "kd", seed], right[task, "ce", seed] = kd[seed], ce[seed]
    _write(tmp_path, spec, "mlp-l6", right)
    pairing = gains(spec, "mlp-l6", tmp_path)["mlp-l3/cross-fit"]
    assert pairing["per_task"]["rt-polarity"] == {"per_seed": [10.0, 12.0], "mean": 11.0}
    assert pairing["per_task"]["tweets-airline"]["mean"] == pytest.approx(2.5)
    assert pairing["per_task"]["bbc-news"]["mean"] == pytest.approx(-10.0)
    assert pairing["tasks_kd_better"] == 2 and pairing["carries"]  # 2 of 3 at min_tasks 2
    assert pairing["mean_gain"] == pytest.approx(3.5 / 3)
    assert teacher_accuracy(spec, "mlp-l6", tmp_path) == {task: pytest.approx(90.5) for task in TASKS}  # 90 and 91 right of 100


def _pairings(*carries_and_gain: tuple[bool, float]) -> dict:
    return {f"p{i}": {"carries": c, "mean_gain": g} for i, (c, g) in enumerate(carries_and_gain)}


def test_the_teacher_with_most_carrying_pairings_wins_and_ties_go_to_the_cheaper_one():
    spec = TestbedSpec(teachers=("mlp-l6", "mlp-mpnet"))
    more = choose(spec, {"mlp-l6": _pairings((True, 1.0), (False, -3.0)), "mlp-mpnet": _pairings((True, 0.2), (True, 0.1))})
    assert more["teacher"] == "mlp-mpnet" and more["carrying"] == {"mlp-l6": 1, "mlp-mpnet": 2}
    tie = choose(spec, {"mlp-l6": _pairings((True, 0.1), (False, -3.0)), "mlp-mpnet": _pairings((True, 2.0), (False, 0.0))})
    assert tie["teacher"] == "mlp-l6"  # listed first: the cheaper encoder


def test_without_any_carrying_pairing_the_largest_mean_gain_is_kept_and_said():
    spec = TestbedSpec(teachers=("mlp-l6", "mlp-mpnet"))
    chosen = choose(spec, {"mlp-l6": _pairings((False, -2.0), (False, 0.5)), "mlp-mpnet": _pairings((False, -0.1), (False, 0.0))})
    assert chosen["teacher"] == "mlp-mpnet" and "no pairing carries information" in chosen["why"]
    report = {"spec": {"tasks": ["t"], "seeds": [0], "min_tasks": 1}, "spec_hash": "0" * 64, "chosen": chosen,
              "per_teacher": {"mlp-l6": {"mlp-l3/cross-fit": {"per_task": {"t": {"mean": -2.0}}, "tasks_kd_better": 0,
                                                              "mean_gain": -2.0, "carries": False}}}}
    assert "| mlp-l6 | mlp-l3/cross-fit | -2.00 | 0 | -2.00 | no |" in to_markdown(report)


def test_a_candidate_is_an_ordinary_clean_suite_of_ce_and_kd_and_bad_specs_are_refused():
    suite = TestbedSpec().suite("mlp-mpnet")
    assert suite.methods == ("ce", "kd") and suite.shifts == () and suite.teacher == "mlp-mpnet"
    assert (suite.max_train, suite.max_test, suite.n_folds) == (2000, 500, 5)  # the cpu suite's data and folds
    with pytest.raises(CudBenchError, match="min_tasks"):
        TestbedSpec(min_tasks=8)
