"""Run a suite: expand it into cells, train each teacher once, train and score the students.

Cells are ``task × seed × target protocol × student architecture × method``.
Every distinct teacher (task, teacher recipe, seed, architecture, fold) is
trained exactly once and cached on disk (weights and logits); every method that
needs it reuses it. A cell is written as one record (:mod:`cud_bench.records`)
when it is complete, so an interrupted run resumes by skipping finished cells
and never half-writes one.

The runner decides what runs (the missing cells, checked against their specs); an
executor (:mod:`cud_bench.executors`) decides where and when, calling the work
functions here: :func:`train_teacher` (one teacher), :func:`run_cells` (cells of
one task), with :func:`teachers_needed` saying which teachers a cell loads.

Target protocols (see docs/architecture.md):
- ``in-sample``: the full-data teacher labels its own training set (the paper's).
- ``cross-fit``: K teachers of the same recipe, each trained without one fold,
  label that fold; the full-data teacher is still the one scored on test (and whose
  clean test probabilities the record stores). A transform fitted on validation
  data (``ts``) fits each fold teacher on its own validation logits.

Shifted sets below the suite's minimum size, or equal to the clean test set, are
not scored; the run log (:meth:`RunSummary.report`) lists them with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cud_bench import calibration, executors, numerics, stages
from cud_bench.data.tasks import get_task
from cud_bench.degenerate import is_degenerate, majority_share
from cud_bench.errors import CudBenchError
from cud_bench.batched import stackable
from cud_bench.executors import Executor, Plan
from cud_bench.io import rebuilt_counts, write_json_atomic
from cud_bench.methods import MethodSpec, get_method
from cud_bench.models.architectures import Architecture
from cud_bench.records import CellKey, provenance, stale_reason, suite_settings_hash, write_record
from cud_bench.recipes import Component, TeacherOutputs
from cud_bench.scoring import ECE, ShiftSets, corruption_summary, scores, stored_logits, stored_probs
from cud_bench.suites import SuiteSpec, check_names, model_presets
from cud_bench.taskdata import Inputs, TaskData, derive_seed, fit_many, prepare_task
from cud_bench.teachers import TeacherStore, ensemble_recipe
from cud_bench.train import predict_logits
from shifts import get_shift

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunSummary:
    out_dir: Path
    records_dir: Path | None = None  # <out>/<suite>/records, named on the report's last line
    cells_total: int = 0
    cells_done_before: int = 0
    cells_stale: list[str] = dataclasses.field(default_factory=list)  # "<stem>: <reason>", recomputed
    cells_written: int = 0
    teachers_trained: dict[str, int] = dataclasses.field(default_factory=dict)
    teachers_reused: dict[str, int] = dataclasses.field(default_factory=dict)
    not_scored: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # task -> set id -> why
    caches_rebuilt: dict[str, int] = dataclasses.field(default_factory=dict)  # kind -> entries that failed their check
    wall_s: float = 0.0

    def report(self) -> str:
        """The run log's summary: cells, how often each teacher recipe was trained or reused, the
        cache entries rebuilt because they failed their check (each is named in the log where it
        happened), and the shifted sets that were not scored (too small, or equal to the clean set)."""
        recipes = sorted(set(self.teachers_trained) | set(self.teachers_reused))
        teachers = ", ".join(
            f"{r}: trained {self.teachers_trained.get(r, 0)}, reused from cache {self.teachers_reused.get(r, 0)}"
            for r in recipes
        )
        stale = f", {len(self.cells_stale)} stale (recomputed)" if self.cells_stale else ""
        rebuilt = ", ".join(f"{kind} {n}" for kind, n in sorted(self.caches_rebuilt.items()) if n)
        skipped = [
            f"  {task}: {set_id} ({why})" for task, sets in sorted(self.not_scored.items()) for set_id, why in sorted(sets.items())
        ]
        return (
            f"cells: {self.cells_total} in suite, {self.cells_done_before} already done{stale}, {self.cells_written} written\n"
            f"teachers (one per task, recipe, seed, fold): {teachers or 'none needed'}\n"
            + (f"caches rebuilt after failing their check (named in the log above): {rebuilt}\n" if rebuilt else "")
            + f"wall time: {self.wall_s:.1f} s\n"
            + (f"sets not scored (never pooled): {len(skipped)}\n" + "\n".join(skipped) + "\n" if skipped else "")
            + f"records: {self.records_dir}"
        )


def expand(suite: SuiteSpec) -> list[CellKey]:
    """Every cell of the suite, in run order (grouped so that a task's data and teachers load once)."""
    return [
        CellKey(suite.name, task, method, seed, protocol, student)
        for task in suite.tasks
        for seed in suite.seeds
        for protocol in suite.protocols
        for student in suite.students
        for method in suite.methods
    ]


def expected_specs(suite: SuiteSpec, cell: CellKey) -> dict[str, str]:
    """The spec hashes a done record of ``cell`` must carry (see :func:`cud_bench.records.stale_reason`)."""
    return {
        "suite": suite_settings_hash(suite.to_dict()),
        "task": get_task(cell.task).spec.spec_hash(),
        "method": get_method(cell.method).spec_hash(),
        "teacher_arch": _arch_hash(suite.teacher),
        "student_arch": _arch_hash(cell.student),
    }


@functools.lru_cache(maxsize=None)
def _arch_hash(preset: str) -> str:
    return model_presets.get(preset)().spec.spec_hash()


def run_suite(
    suite: SuiteSpec,
    out_dir: Path,
    *,
    progress: bool = True,
    teacher_cache: Path | None = None,
    jobs: int = 1,
    recompute: bool = True,
    numerics_mode: str = "native",
    group_size: int | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Run every missing cell of ``suite`` and write its record under ``out_dir/<suite>/records``.

    ``teacher_cache`` overrides where trained teachers are kept (default: ``<cache>/teachers``).
    ``executor`` (:mod:`cud_bench.executors`) decides where each teacher and cell runs;
    default: the one set by :func:`cud_bench.executors.use`, else the local executor
    with ``jobs`` worker processes (:class:`~cud_bench.executors.local.LocalExecutor`;
    ``jobs`` is that executor's option, refused beside another one).

    ``numerics_mode`` (:mod:`cud_bench.numerics`): ``"portable"`` runs every cell
    in processes started with the mode's environment, so their kernels are chosen
    before torch is imported. A records folder holds one mode only
    (``numerics.json`` beside the records).

    ``group_size``: a task's students of one architecture train together as stacks of at most
    this many models (:mod:`cud_bench.batched`; None: all of them; 1: one at a time, the
    reference path). Each model gets what it gets alone, so the records do not depend on it.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if group_size is not None and group_size < 1:
        raise CudBenchError(f"the training group size must be at least 1, got {group_size}")
    executor = _executor(executor, jobs)
    check_names(suite)  # unknown names and out-of-range method variants fail before any work
    mode = numerics.modes.get(numerics_mode)
    _claim_mode(out_dir / suite.name, mode)
    cells = expand(suite)
    summary = RunSummary(out_dir, records_dir=out_dir / suite.name / "records", cells_total=len(cells))
    reasons = {c: stale_reason(out_dir, c, expected_specs(suite, c)) for c in cells}
    todo = [c for c in cells if reasons[c] is not None]
    summary.cells_stale = [f"{c.stem}: {reasons[c]}" for c in todo if reasons[c] != "missing"]
    if summary.cells_stale and not recompute:
        raise CudBenchError(
            f"{len(summary.cells_stale)} record(s) in {summary.records_dir} were made with other specs than the "
            "suite's now (rerun without --no-recompute to recompute them):\n  " + "\n  ".join(summary.cells_stale)
        )
    for line in summary.cells_stale:
        log.warning("stale record, recomputing: %s", line)
    summary.cells_done_before = len(cells) - len(todo)
    counts = executor.run(Plan(suite, tuple(todo), out_dir, teacher_cache, mode, progress, group_size))
    for written, trained, reused, not_scored, rebuilt in counts:
        summary.cells_written += written
        for kind, n in rebuilt.items():
            summary.caches_rebuilt[kind] = summary.caches_rebuilt.get(kind, 0) + n
        summary.not_scored.update(not_scored)
        for recipe, n in trained.items():
            summary.teachers_trained[recipe] = summary.teachers_trained.get(recipe, 0) + n
        for recipe, n in reused.items():
            summary.teachers_reused[recipe] = summary.teachers_reused.get(recipe, 0) + n
    summary.wall_s = time.perf_counter() - start
    return summary


def _executor(executor: Executor | None, jobs: int) -> Executor:
    """The executor a run uses: the one given, else the one :func:`cud_bench.executors.use` set, else local."""
    chosen = executor or executors.current()
    if chosen is None:
        return executors.create("local", jobs=jobs)
    if jobs != 1:
        raise CudBenchError(f"jobs is an option of the local executor; this run uses the {chosen.name} executor")
    return chosen


# cells written, teachers trained / reused by recipe, sets not scored (task -> set id -> why),
# cache entries rebuilt after failing their check (kind -> count)
Counts = tuple[int, dict[str, int], dict[str, int], dict[str, dict[str, str]], dict[str, int]]


@dataclasses.dataclass(frozen=True)
class TeacherNeed:
    """One teacher a cell needs: (task, recipe, seed, fold); ``fold`` None is the full-data teacher."""

    task: str
    recipe: Component
    seed: int
    fold: int | None

    @property
    def key(self) -> tuple[str, str, int, int | None]:
        return (self.task, self.recipe.spec_hash(), self.seed, self.fold)

    @property
    def label(self) -> str:
        return f"teacher {self.task} {self.recipe.label} seed {self.seed} {'full' if self.fold is None else f'fold {self.fold}'}"


def teachers_needed(suite: SuiteSpec, cell: CellKey) -> list[TeacherNeed]:
    """Every teacher :func:`run_cells` loads for ``cell``, so an executor can train each one first, once.

    Its method's teacher (plus the fold teachers under cross-fit) and, when a scored
    shift needs them, the ambiguity ensemble's teachers of the cell's task.
    """
    needs = []
    method = get_method(cell.method).for_task(cell.task)
    if method.teacher is not None:
        folds = range(suite.n_folds) if cell.protocol == "cross-fit" else range(0)
        needs += [TeacherNeed(cell.task, method.teacher, cell.seed, fold) for fold in (None, *folds)]
    if ShiftSets.needs_teacher_probs(suite, cell.task):
        needs += [TeacherNeed(cell.task, ensemble_recipe(), seed, None) for seed in suite.ensemble_seeds]
    return needs


def train_teacher(
    suite: SuiteSpec, data: TaskData, need: TeacherNeed, teacher_cache: Path | None, inputs: Inputs
) -> tuple[dict[str, int], dict[str, int]]:
    """Train one teacher into the cache (or find it there): teachers trained / reused, by recipe."""
    teachers = TeacherStore(model_presets.get(suite.teacher)(), suite.n_folds, inputs, teacher_cache)
    teachers.get(data, need.recipe, need.seed, need.fold)
    return dict(teachers.trained), dict(teachers.reused)


def run_cells(
    suite: SuiteSpec,
    cells: list[CellKey],
    out_dir: Path,
    teacher_cache: Path | None,
    progress: bool,
    group_size: int | None = None,
) -> Counts:
    """Run ``cells`` (grouped by task, as :func:`expand` orders them) in this process, the executors'
    unit of cell work: each task's cells of one student architecture train together
    (:func:`run_group`), each record written as soon as it is scored. What the worker is doing
    between records goes to :mod:`cud_bench.stages` (and this process's bar)."""
    rebuilt_before = rebuilt_counts()
    inputs = Inputs(progress)
    teachers = TeacherStore(model_presets.get(suite.teacher)(), suite.n_folds, inputs, teacher_cache)
    students = {name: model_presets.get(name)() for name in suite.students}
    not_scored: dict[str, dict[str, str]] = {}
    groups: dict[tuple[str, str], list[CellKey]] = {}
    for cell in cells:
        groups.setdefault((cell.task, cell.student), []).append(cell)
    data: TaskData | None = None
    with tqdm(total=len(cells), desc=f"suite {suite.name}", unit="cell", disable=not progress) as bar:
        for (task, student), group in groups.items():

            def stage(text: str, task: str = task, student: str = student) -> None:
                stages.report(out_dir, suite.name, task, student, text)
                bar.set_postfix_str(f"{task} {student}: {text}")

            if data is None or data.spec.name != task:
                with _following(stage, "data and shifted sets", teachers, inputs):
                    data = prepare_task(task, suite)
                    shift_sets = ShiftSets(suite, data, lambda: teachers.seed_ensemble(data, suite.ensemble_seeds))
                not_scored[task] = dict(shift_sets.not_scored)
                for set_id, why in shift_sets.not_scored.items():
                    log.info("%s: set %s not scored: %s", task, set_id, why)
            for cell, (record, predictions) in zip(
                group, run_group(group, suite, data, teachers, students[student], inputs, shift_sets, group_size, stage)
            ):
                write_record(out_dir, cell, record, predictions)
                bar.update(1)
            stages.finished(out_dir, suite.name, task, student)
    rebuilt = {kind: n - rebuilt_before.get(kind, 0) for kind, n in rebuilt_counts().items() if n > rebuilt_before.get(kind, 0)}
    return len(cells), dict(teachers.trained), dict(teachers.reused), not_scored, rebuilt


def _claim_mode(folder: Path, mode: numerics.NumericsMode) -> None:
    """Mark ``folder`` (a suite's results) as holding ``mode``'s numbers; refuse one that holds another's."""
    marker = folder / "numerics.json"
    recorded = None
    if marker.exists():
        recorded = json.loads(marker.read_text())["mode"]
    elif any((folder / "records").glob("*.json")):
        recorded = "native"  # records written before modes existed
    numerics.require_same_mode(recorded, mode, str(folder))
    if recorded is None:
        write_json_atomic(marker, {"mode": mode.name, "description": mode.description})


def run_group(
    cells: list[CellKey],
    suite: SuiteSpec,
    data: TaskData,
    teachers: TeacherStore,
    arch: Architecture,
    inputs: Inputs,
    shift_sets: ShiftSets,
    group_size: int | None = None,
    stage: Callable[[str], None] = lambda text: None,
) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Train the students of ``cells`` (one task, one student architecture ``arch``) together and
    score each; yields each cell's record and predictions as soon as it is scored, in the order of
    ``cells``, and tells ``stage`` what it is doing.

    Every cell's teacher and targets come first (teachers trained once, as for one cell), then
    :func:`~cud_bench.taskdata.fit_many` trains the students as stacks of at most ``group_size``
    (None: all; 1: one at a time), each exactly as alone. A cell's ``wall_s["student"]`` is its
    share of the group's training time.
    """
    if any(c.task != data.spec.name for c in cells):
        raise ValueError(f"run_group needs cells of task {data.spec.name!r} only")
    if arch.needs_features:
        with _following(stage, "encoding the clean splits and shifted sets", teachers, inputs):
            shift_sets.encode(arch, inputs)
    size = (group_size or len(cells)) if stackable(arch) else 1  # unstacked models are scored and dropped one by one
    for start in range(0, len(cells), size):
        chunk = cells[start : start + size]
        where = f"cell {start + 1}" if len(chunk) == 1 else f"cells {start + 1}-{start + len(chunk)}"
        yield from _train_and_score(
            chunk, suite, data, teachers, arch, inputs, shift_sets, group_size,
            lambda text, where=where: stage(f"{where} of {len(cells)}, {text}"),
        )


@contextlib.contextmanager
def _following(stage: Callable[[str], None], where: str, teachers: TeacherStore, inputs: Inputs) -> Iterator[None]:
    """Inside the block the stage line reads ``where``, then the teacher being trained, then how far
    the encoding of the texts it (or anything else) waits for has come."""
    teacher = ""

    def trains(what: str) -> None:
        nonlocal teacher
        teacher = what
        stage(", ".join(filter(None, (where, what))))

    stage(where)
    with teachers.reporting(trains), inputs.reporting(lambda what: stage(", ".join(filter(None, (where, teacher, what))))):
        yield


def _train_and_score(
    cells: list[CellKey],
    suite: SuiteSpec,
    data: TaskData,
    teachers: TeacherStore,
    arch: Architecture,
    inputs: Inputs,
    shift_sets: ShiftSets,
    group_size: int | None,
    stage: Callable[[str], None],
) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    methods = [get_method(c.method) for c in cells]
    sides = []
    for k, (c, m) in enumerate(zip(cells, methods), start=1):
        where = "teacher and targets" if len(cells) == 1 else f"teachers and targets {k}/{len(cells)}"
        with _following(stage, where, teachers, inputs):
            sides.append(_teacher_side(c, m.for_task(c.task), data, teachers, shift_sets if suite.teacher_shifts else None))
    stage("training" if len(cells) == 1 else f"training {len(cells)} students")
    clock = time.perf_counter()
    fitted = fit_many(
        arch, data, [m.student.build() for m in methods], [derive_seed("student", c.seed) for c in cells], inputs,
        [side[1] for side in sides], group_size,
    )
    student_wall = (time.perf_counter() - clock) / max(1, len(cells))
    for k, (method, (teacher_part, _, teacher_arrays, wall), (model, card)) in enumerate(zip(methods, sides, fitted), start=1):
        stage("scoring" if len(cells) == 1 else f"scoring {k}/{len(cells)}")
        wall["student"] = student_wall
        clock = time.perf_counter()
        val_logits = predict_logits(arch, model, inputs(arch, data.validation.texts))
        test_logits = predict_logits(arch, model, inputs(arch, data.test.texts))
        T = calibration.fit_temperature(val_logits, data.validation.labels, split="validation")
        test_probs = stored_probs(test_logits)
        clean = scores(test_probs, data.test.labels, T)
        shift_scores, shift_predictions = shift_sets.score(arch, model, test_logits, T, inputs)
        student_part = {
            "clean": clean,
            "majority_share": majority_share(test_probs),
            "degenerate": is_degenerate(test_probs),
            "shifts": shift_scores,
            "corruption_summary": corruption_summary(shift_scores, clean["raw"][ECE]),
        }
        wall["scoring"] = time.perf_counter() - clock
        record = {
            "specs": _specs(suite, data, method, teachers.arch, arch, shift_sets),
            "student": student_part,
            "teacher": teacher_part,
            "training": card,
            "provenance": provenance(wall),
        }
        predictions = {
            "clean/probs": test_probs,
            "clean/labels": data.test.labels,
            "validation/logits": stored_logits(val_logits),  # the post-hoc temperature is re-fitted from these
            "validation/labels": data.validation.labels,
            **teacher_arrays,
            **shift_predictions,
        }
        yield record, predictions


def _teacher_side(
    cell: CellKey, method: MethodSpec, data: TaskData, teachers: TeacherStore, shift_sets: ShiftSets | None
) -> tuple[dict[str, Any] | None, np.ndarray | None, dict[str, np.ndarray], dict[str, float]]:
    """A cell's teacher report, the student's targets, the teacher arrays its predictions file
    stores (test probabilities, validation logits) and the wall times of teacher and targets
    (None, None and no arrays for a method without a teacher). ``shift_sets`` None: the teacher
    is not scored on shifted sets (the suite's ``teacher_shifts``)."""
    wall: dict[str, float] = {}
    if method.teacher is None:
        return None, None, {}, wall
    clock = time.perf_counter()
    teacher = teachers.full(data, method.teacher, cell.seed)
    train_logits, folds = teacher.logits["train"], ()
    if cell.protocol == "cross-fit":
        train_logits = teachers.out_of_fold(data, method.teacher, cell.seed)
        folds = teachers.fold_validation(data, method.teacher, cell.seed)
    wall["teacher"] = time.perf_counter() - clock
    clock = time.perf_counter()
    target = method.transform.build()(
        TeacherOutputs(train_logits, data.train.labels, teacher.logits["validation"], data.validation.labels, folds)
    )
    targets = target.probs
    wall["targets"] = time.perf_counter() - clock
    teacher_probs = stored_probs(teacher.logits["test"])
    # what a release needs to recompute the teacher's scores and temperatures
    teacher_arrays = {"teacher/clean/probs": teacher_probs, "teacher/validation/logits": stored_logits(teacher.logits["validation"])}
    if target.fold_temperatures:  # each fold teacher's own temperature: its validation logits
        teacher_arrays.update({f"teacher/fold/{k}/validation/logits": stored_logits(val) for k, (_, val) in enumerate(folds)})
    teacher_part = {
        "recipe": method.teacher.label,
        "clean": scores(teacher_probs, data.test.labels, teacher.temperature),
        "majority_share": majority_share(teacher_probs),
        "degenerate": is_degenerate(teacher_probs),
        "shifts": {} if shift_sets is None else teachers.shift_scores(data, method.teacher, cell.seed, shift_sets),
        "train_accuracy": float(np.mean(teacher.logits["train"].argmax(1) == data.train.labels)),
        "targets": {
            "rows_changed": target.rows_changed,
            "temperature": target.temperature,
            "accuracy": float(np.mean(targets.argmax(1) == data.train.labels)),
            "mean_confidence": float(targets.max(1).mean()),
        },
        "fold_temperatures": list(target.fold_temperatures) or None,
        "training": teacher.card,
    }
    return teacher_part, targets, teacher_arrays, wall


def _specs(
    suite: SuiteSpec, data: TaskData, method: MethodSpec, teacher: Architecture, student: Architecture, shift_sets: ShiftSets
) -> dict:
    def entry(spec: Any) -> dict:
        return {"hash": spec.spec_hash(), "spec": spec.to_dict()}

    return {
        "task": {**entry(data.spec), "id": data.spec.id, "subset": data.subset},
        "method": entry(method),
        "suite": entry(suite),
        "teacher_arch": entry(teacher.spec),
        "student_arch": entry(student.spec),
        "shifts": {shift_id: entry(get_shift(shift_id).spec) for shift_id in shift_sets.shift_ids},
    }
