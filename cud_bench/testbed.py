"""The testbed rule: which teacher makes distillation carry information (docs/cud-method.md, section 8).

Why: in release 1.0 vanilla KD transferred nothing (a MiniLM-L6 teacher barely better than its
students; KD *below* the no-teacher student for the hashed bag), so CUD-vs-KD verdicts said little
about distillation. The rule compares only ``kd`` with the no-teacher ``ce`` student, never CUD or
another method, on validation data only, and was written before any candidate ran:

- a (teacher, student, protocol) pairing *carries information* when kd's validation accuracy, mean
  over seeds, exceeds ce's on at least ``min_tasks`` (a majority) of the seven offline tasks;
- the testbed is the candidate teacher under which the most pairings carry information, ties going
  to the cheaper teacher (candidates are listed cheapest encoder first); when no pairing carries
  information under any teacher, the teacher with the largest mean gain (kd - ce), said plainly.

Each candidate is an ordinary suite (methods ``ce`` and ``kd``, clean data only: :meth:`TestbedSpec.suite`)
run by :func:`cud_bench.runner.run_suite`, so teachers are trained once and cached, and a run resumes.
The rule reads each record's stored validation logits and labels; its test scores exist (every
run scores them) but are never read here. Both students stop early on the same validation split, so
their validation accuracies are both slightly optimistic; the difference is what the rule uses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cud_bench.errors import CudBenchError
from cud_bench.faithfulness import OFFLINE_TASKS
from cud_bench.io import write_bytes_atomic, write_json_atomic
from cud_bench.records import CellKey, read_predictions
from cud_bench.runner import expand, run_suite
from cud_bench.specs import Spec
from cud_bench.suites import SuiteSpec


@dataclasses.dataclass(frozen=True)
class TestbedSpec(Spec):
    """The candidates and the rule's threshold; the data and training are release 1.0's cpu suite's."""

    __test__ = False  # not a pytest class

    # Pinned as run (release 1.0's cpu suite), so a later change of the suite leaves the rule's spec as it was.
    teachers: tuple[str, ...] = ("mlp-l6", "mlp-mpnet")  # cheapest encoder first: the tie-break order
    students: tuple[str, ...] = ("mlp-l3", "hashed-bag")
    protocols: tuple[str, ...] = ("in-sample", "cross-fit")
    tasks: tuple[str, ...] = OFFLINE_TASKS
    seeds: tuple[int, ...] = (0, 1, 2)
    min_tasks: int = 4  # a majority of the seven
    n_folds: int = 5
    max_train: int | None = 2000
    max_test: int | None = 500

    def __post_init__(self) -> None:
        if not self.teachers or not self.students or not self.tasks or not self.seeds:
            raise CudBenchError("the testbed rule needs at least one teacher, student, task and seed")
        if not 1 <= self.min_tasks <= len(self.tasks):
            raise CudBenchError(f"min_tasks must lie in [1, {len(self.tasks)}], got {self.min_tasks}")

    def suite(self, teacher: str) -> SuiteSpec:
        """One candidate teacher's suite: ``ce`` and ``kd`` on clean data, the cpu suite's data and folds."""
        return SuiteSpec(
            name=f"testbed-{teacher}", tasks=self.tasks, methods=("ce", "kd"), seeds=self.seeds,
            protocols=self.protocols, teacher=teacher, students=self.students, n_folds=self.n_folds,
            max_train=self.max_train, max_test=self.max_test, shifts=(),
            description=f"the testbed rule's candidate teacher {teacher}: kd against ce, clean data",
        )


def validation_accuracy(out: Path, cell: CellKey, model: str = "student") -> float:
    """A finished cell's validation accuracy (%) of its student or its (full-data) teacher, from stored logits."""
    pred = read_predictions(cell.record_path(out))
    logits = pred["validation/logits" if model == "student" else "teacher/validation/logits"]
    return 100.0 * float(np.mean(logits.argmax(axis=1) == pred["validation/labels"]))


def teacher_accuracy(spec: TestbedSpec, teacher: str, out: Path) -> dict[str, float]:
    """Per task, the teacher's validation accuracy (%), mean over seeds: the gap a student could learn from."""
    name, student, protocol = spec.suite(teacher).name, spec.students[0], spec.protocols[0]
    return {
        task: float(np.mean([validation_accuracy(out, CellKey(name, task, "kd", s, protocol, student), "teacher") for s in spec.seeds]))
        for task in spec.tasks
    }


def gains(spec: TestbedSpec, teacher: str, out: Path) -> dict[str, Any]:
    """Per (student, protocol): per task, kd - ce in validation accuracy points, per seed and the mean."""
    suite = spec.suite(teacher)
    acc = {(c.task, c.method, c.seed, c.protocol, c.student): validation_accuracy(out, c) for c in expand(suite)}
    pairings = {}
    for student in spec.students:
        for protocol in spec.protocols:
            per_task = {}
            for task in spec.tasks:
                per_seed = [acc[task, "kd", s, protocol, student] - acc[task, "ce", s, protocol, student] for s in spec.seeds]
                per_task[task] = {"per_seed": per_seed, "mean": float(np.mean(per_seed))}
            wins = sum(v["mean"] > 0 for v in per_task.values())
            pairings[f"{student}/{protocol}"] = {
                "student": student, "protocol": protocol, "per_task": per_task, "tasks_kd_better": wins,
                "carries": wins >= spec.min_tasks, "mean_gain": float(np.mean([v["mean"] for v in per_task.values()])),
            }
    return pairings


def choose(spec: TestbedSpec, per_teacher: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The rule: most pairings carrying information, ties to the cheaper teacher; none anywhere: the largest mean gain."""
    carrying = {t: sum(p["carries"] for p in pairings.values()) for t, pairings in per_teacher.items()}
    mean_gain = {t: float(np.mean([p["mean_gain"] for p in pairings.values()])) for t, pairings in per_teacher.items()}
    order = [t for t in spec.teachers if t in per_teacher]
    if any(carrying.values()):
        best = max(order, key=lambda t: (carrying[t], -order.index(t)))
        why = f"{carrying[best]} of {len(per_teacher[best])} pairings carry information (kd > ce on >= {spec.min_tasks} tasks)"
    else:
        best = max(order, key=lambda t: mean_gain[t])
        why = "no pairing carries information under any candidate; the largest mean gain"
    return {"teacher": best, "why": why, "carrying": carrying, "mean_gain": mean_gain}


def run_testbed(spec: TestbedSpec, out: Path, jobs: int = 1, progress: bool = True,
                log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run each candidate's suite (resuming), apply the rule, write ``testbed.json`` and ``testbed.md``."""
    per_teacher, accuracy = {}, {}
    for teacher in spec.teachers:
        summary = run_suite(spec.suite(teacher), out, jobs=jobs, progress=progress)
        log(f"{teacher}: {summary.cells_written} cells written, {summary.cells_done_before} done before, {summary.wall_s:.0f} s")
        per_teacher[teacher] = gains(spec, teacher, out)
        accuracy[teacher] = teacher_accuracy(spec, teacher, out)
    report = {"spec": dataclasses.asdict(spec), "spec_hash": spec.spec_hash(), "per_teacher": per_teacher,
              "teacher_accuracy": accuracy, "chosen": choose(spec, per_teacher)}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "testbed.json", report)
    write_bytes_atomic(out / "testbed.md", to_markdown(report).encode())
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """Per teacher and pairing: kd - ce in validation accuracy points per task (mean over seeds), the count, the verdict."""
    spec = report["spec"]
    tasks = spec["tasks"]
    lines = [
        f"Testbed rule (spec {report['spec_hash'][:12]}): kd − ce, validation accuracy in points, mean over seeds "
        f"{', '.join(map(str, spec['seeds']))}; a pairing carries information when kd > ce on at least "
        f"{spec['min_tasks']} of {len(tasks)} tasks.",
        "",
        "| teacher | student / protocol | " + " | ".join(tasks) + " | kd > ce | mean | carries |",
        "|---|---|" + "---|" * len(tasks) + "---|---|---|",
    ]
    for teacher, pairings in report["per_teacher"].items():
        accuracy = report.get("teacher_accuracy", {}).get(teacher)
        if accuracy:
            lines.append(f"| {teacher} | *teacher's accuracy %* | " + " | ".join(f"{accuracy[t]:.1f}" for t in tasks)
                         + f" | | {np.mean(list(accuracy.values())):.1f} | |")
        for name, p in pairings.items():
            cells = [f"{p['per_task'][t]['mean']:+.2f}" for t in tasks]
            lines.append(f"| {teacher} | {name} | " + " | ".join(cells)
                         + f" | {p['tasks_kd_better']} | {p['mean_gain']:+.2f} | {'yes' if p['carries'] else 'no'} |")
    chosen = report["chosen"]
    lines += ["", f"Chosen teacher: **{chosen['teacher']}** ({chosen['why']})."]
    return "\n".join(lines) + "\n"
