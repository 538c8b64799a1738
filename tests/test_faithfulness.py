"""The faithfulness rule: criterion, region and selection on constructed numbers; the tool end to end on one task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from cud_bench.faithfulness import (
    OFFLINE_TASKS,
    PARAMS,
    FaithfulnessSpec,
    judge,
    per_task_table,
    plausible_region,
    run_faithfulness,
    score_logits,
    select,
    summarise,
    with_grid,
    with_tasks,
)
from cud_bench.method_defs.dus_per_task import TABLE
from cud_bench.methods import get_method
from cud_bench.suites import suites

SPEC = FaithfulnessSpec()
ROOT = Path(__file__).resolve().parent.parent


def _score(correct: int, n: int = 500, conf: float = 0.7) -> dict:
    return {"correct": correct, "n": n, "median_confidence": conf}


@pytest.mark.parametrize(
    ("dus", "ok_acc", "ok_conf"),
    [
        (_score(400), True, True),
        (_score(405), True, True),  # exactly +1 point of 500 examples is within
        (_score(395), True, True),  # exactly -1 point
        (_score(394), False, True),  # 1.2 points below
        (_score(406), False, True),  # more accurate by more than a point also fails: "within 1 point"
        (_score(400, conf=0.5), True, True),  # the range is closed
        (_score(400, conf=0.9), True, True),
        (_score(400, conf=0.4999), True, False),
        (_score(400, conf=0.9001), True, False),
    ],
)
def test_criterion(dus, ok_acc, ok_conf):
    verdict = judge(SPEC, dus, _score(400, conf=0.97))
    assert (verdict["accuracy_ok"], verdict["confidence_ok"], verdict["pass"]) == (ok_acc, ok_conf, ok_acc and ok_conf)
    assert verdict["delta_points"] == pytest.approx((dus["correct"] - 400) / 5)


def test_on_a_split_under_100_examples_one_example_of_gap_passes_and_two_do_not():
    """drug-reviews has 59 validation examples: 1 point alone would demand identical counts."""
    ce = _score(43, n=59, conf=0.67)
    assert [judge(SPEC, _score(c, n=59), ce)["accuracy_ok"] for c in (41, 42, 43, 44, 45)] == [False, True, True, True, False]
    strict = FaithfulnessSpec(tolerance_examples=0)
    assert [judge(strict, _score(c, n=59), ce)["accuracy_ok"] for c in (42, 43, 44)] == [False, True, False]


def test_region_needs_six_of_seven_and_a_subset_keeps_the_allowed_failures():
    tasks = SPEC.tasks
    passes = {
        "all": dict.fromkeys(tasks, True),
        "six": {t: i != 3 for i, t in enumerate(tasks)},
        "five": {t: i < 5 for i, t in enumerate(tasks)},
    }
    assert plausible_region(SPEC, passes) == (["all", "six"], 6)
    two = {k: {t: v[t] for t in tasks[3:5]} for k, v in passes.items()}  # "six" fails tasks[3] here
    assert plausible_region(SPEC, two) == (["all", "six", "five"], 1)
    three = {k: {t: v[t] for t in tasks[3:6]} for k, v in passes.items()}  # "five" fails tasks[5]: 2 of 3
    assert plausible_region(SPEC, three) == (["all", "six", "five"], 2)


def test_selection_order_is_the_committed_one():
    grid = SPEC.settings()
    assert len(grid) == 90
    # today's setting comes first in the order: selected whenever it is in the region
    assert select(grid) == {"lam_ce": 0.0, "tau_gate": 0.5, "rho": 0.1, "beta": 2.0}
    region = [s for s in grid if s["lam_ce"] >= 0.1]
    assert select(region) == {"lam_ce": 0.1, "tau_gate": 0.5, "rho": 0.1, "beta": 2.0}
    region = [s for s in grid if s["tau_gate"] != 0.5 and s["lam_ce"] == 0.25]
    assert select(region)["tau_gate"] == 0.3  # nearest 0.5 before 0
    region = [s for s in grid if s["tau_gate"] == 0.0 and s["rho"] > 0.1]
    assert select(region) == {"lam_ce": 0.0, "tau_gate": 0.0, "rho": 0.5, "beta": 2.0}
    assert select([]) is None


def test_variant_is_the_cud_teacher_with_those_values():
    setting = {"lam_ce": 0.25, "tau_gate": 0.3, "rho": 1.0, "beta": 1.0}
    teacher = get_method(SPEC.variant(setting)).teacher
    assert {k: teacher.params[k] for k in setting} == setting
    assert (teacher.params["gamma"], teacher.params["lam_f"]) == (10.0, 1.0)
    assert get_method("cud").teacher.params["lam_ce"] == 0.0  # the grid varies the recipe's registered default


def test_score_logits_median_top1():
    logits = np.log(np.array([[0.6, 0.4], [0.2, 0.8], [0.95, 0.05]]))
    s = score_logits(logits, np.array([0, 0, 0]))
    assert (s["correct"], s["n"]) == (2, 3)
    assert s["median_confidence"] == pytest.approx(0.8)


def test_summary_region_and_today_from_constructed_results():
    spec = FaithfulnessSpec(tasks=("a", "b"), lam_ce=(0.0, 1.0), tau_gate=(0.5,), rho=(0.1,), beta=(2.0,), min_tasks=2)
    ce = {**_score(80, 100, 0.95), "accuracy": 80.0}

    def rows(confs):
        out = []
        for s, conf in zip(spec.settings(), confs):
            sc = {**_score(80, 100, conf), "accuracy": 80.0}
            out.append({"setting": s, **sc, **judge(spec, sc, ce)})
        return out

    per_task = [{"task": "a", "ce": ce, "rows": rows([0.4, 0.8]), "wall_s": 1.0},
                {"task": "b", "ce": ce, "rows": rows([0.6, 0.85]), "wall_s": 1.0}]
    report = summarise(spec, per_task)
    assert report["region"] == ["lam_ce=1, tau_gate=0.5, rho=0.1, beta=2"]
    assert report["selected"]["setting"]["lam_ce"] == 1.0
    # per task alone: a passes only lam_ce=1; b passes both and the order prefers the smaller lam_ce
    assert {t: s["lam_ce"] for t, s in report["per_task_selected"].items()} == {"a": 1.0, "b": 0.0}
    assert report["today"] == {"setting": {"lam_ce": 0.0, "tau_gate": 0.5, "rho": 0.1, "beta": 2.0},
                               "label": "lam_ce=0, tau_gate=0.5, rho=0.1, beta=2", "in_grid": True, "passes": 1, "in_region": False}


def test_tool_on_one_task_with_a_two_point_grid(tmp_path):
    spec = FaithfulnessSpec(
        tasks=("drug-reviews",), lam_ce=(0.0, 1.0), tau_gate=(0.5,), rho=(0.1,), beta=(2.0,), min_tasks=1, max_train=200, max_test=100
    )
    report = run_faithfulness(spec, tmp_path)
    saved = json.loads((tmp_path / "faithfulness.json").read_text())
    assert saved["region"] == report["region"] and saved["spec_hash"] == spec.spec_hash()
    (task,) = report["per_task"]
    assert task["ce"]["n"] == 59 and len(task["rows"]) == 2  # drug-reviews' whole validation split
    for row in task["rows"]:
        assert row["pass"] == (abs(row["correct"] - task["ce"]["correct"]) * 100 <= row["n"] and 0.5 <= row["median_confidence"] <= 0.9)
    # a DUS teacher with a full-weight CE term beside the focal one is more confident than one without
    assert task["rows"][1]["median_confidence"] > task["rows"][0]["median_confidence"]
    md = (tmp_path / "faithfulness.md").read_text()
    assert "drug-reviews" in md and "| 0, 0.5, 0.1, 2" in md and "| 1, 0.5, 0.1, 2" in md  # PARAMS order
    again = run_faithfulness(spec, tmp_path)  # resumes from the finished task's file
    assert again["per_task"] == json.loads(json.dumps(report["per_task"]))


def test_other_tasks_are_a_spec_of_their_own_and_unknown_ones_are_refused(tmp_path, capsys):
    other = with_tasks(SPEC, ["tweets-sentiment"])
    assert other.tasks == ("tweets-sentiment",) and other.min_tasks == 1 and other.spec_hash() != SPEC.spec_hash()
    assert main(["faithfulness", "--tasks", "no-such-task", "--out", str(tmp_path)]) == 2
    assert "no-such-task" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


REPORTS = [ROOT / p for p in json.loads(TABLE.read_text())["reports"]]


def test_the_committed_table_is_what_the_committed_reports_select():
    table = json.loads(TABLE.read_text())
    assert per_task_table([ROOT / p for p in table["reports"]])["settings"] == table["settings"]  # paths relative to the root
    assert set(table["settings"]) >= set(suites.get("cpu").tasks)  # every task of the main suite has its setting
    for path in table["reports"]:  # judged on the teacher the main suite distils from
        assert json.loads((ROOT / path).read_text())["spec"]["teacher"] == suites.get("cpu").teacher == SPEC.teacher


def test_the_default_cud_teacher_passes_the_criterion_on_every_task_judged():
    """Issue #12's "done when": the default cud teacher's median validation confidence in [0.5, 0.9]
    (and accuracy within a point of CE) on at least 6 of the 7 offline tasks; per task it passes on all."""
    cud = get_method("cud")
    for path in REPORTS:
        report = json.loads(path.read_text())
        for result in report["per_task"]:
            params = cud.for_task(result["task"]).teacher.params
            (row,) = [r for r in result["rows"] if r["setting"] == {p: params[p] for p in PARAMS}]
            assert row["pass"] and 0.5 <= row["median_confidence"] <= 0.9, result["task"]
    offline = json.loads(REPORTS[0].read_text())
    assert [r["task"] for r in offline["per_task"]] == list(OFFLINE_TASKS) and offline["region"] == []  # the global rule: empty


def test_the_table_refuses_a_task_nothing_passes_and_conflicting_reports(tmp_path):
    report = json.loads(REPORTS[1].read_text())
    (tmp_path / "a.json").write_text(json.dumps(report))
    for row in report["per_task"][0]["rows"]:
        row["pass"] = False
    (tmp_path / "b.json").write_text(json.dumps(report))
    with pytest.raises(CudBenchError, match="no grid setting passes on 20newsgroups-15groups"):
        per_task_table([tmp_path / "b.json"])
    for row in report["per_task"][0]["rows"]:
        row["pass"] = True
    (tmp_path / "c.json").write_text(json.dumps(report))
    with pytest.raises(CudBenchError, match="judged before with another selection"):
        per_task_table([tmp_path / "a.json", tmp_path / "c.json"])
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(CudBenchError, match="not a faithfulness report"):
        per_task_table([tmp_path / "d.json"])


def test_a_grid_extension_is_its_own_spec_and_bad_axes_are_refused(tmp_path, capsys):
    base = FaithfulnessSpec()
    ext = with_grid(base, {"lam_ce": ["0.02", "0.05"], "tau_gate": ["0"]})
    assert ext.lam_ce == (0.02, 0.05) and ext.tau_gate == (0.0,) and ext.rho == base.rho and ext.beta == base.beta
    assert ext.spec_hash() != base.spec_hash() and len(ext.settings()) == 2 * 1 * 3 * 2
    for bad, message in ((["gamma=5"], "unknown hyperparameter(s) ['gamma']"), (["rho=a"], "values must be numbers"),
                         (["rho"], "expected PARAM=V1,V2")):
        assert main(["faithfulness", "--tasks", "drug-reviews", "--grid", *bad, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work

