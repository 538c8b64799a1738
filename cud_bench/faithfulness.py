"""The faithfulness rule for DUS's unstated hyperparameters (docs/cud-method.md, section 7).

Why: the paper states ``lam_h``, ``gamma`` and ``alpha`` but not ``lam_ce``, ``tau_gate``,
``rho`` or ``beta``. They are fixed from what the paper shows of its *teacher* alone: at
gamma = 10 a DUS teacher as accurate as the CE one (within 1 point) whose median top-1
confidence lies in [0.5, 0.9]. Only teachers are trained and only validation data is
scored, so no student metric or test example can influence the choice.

:func:`run_faithfulness` trains, per task, the CE teacher and one DUS teacher per grid
setting as one stack (:func:`cud_bench.taskdata.fit_many`, each bit-identical to training
alone), then :func:`judge` applies the criterion, :func:`plausible_region` the
at-least-6-of-7 rule and :func:`select` the selection rule committed before the grid ran.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cud_bench import calibration
from cud_bench.errors import CudBenchError
from cud_bench.io import write_bytes_atomic, write_json_atomic
from cud_bench.methods import get_method, variant_name
from cud_bench.recipes import component
from cud_bench.specs import Spec
from cud_bench.suites import suites

_CPU = suites.get("cpu")
# The seven offline tasks of the cpu suite (its other two are derived from these for shifts).
OFFLINE_TASKS = ("20newsgroups", "reuters-r52", "reuters-r8", "bbc-news", "drug-reviews", "tweets-airline", "rt-polarity")
PARAMS = ("lam_ce", "tau_gate", "rho", "beta")  # the grid's axes, in the order a setting is written


@dataclasses.dataclass(frozen=True)
class FaithfulnessSpec(Spec):
    """The grid, the criterion and the data it is judged on; frozen before any run.

    ``max_delta_points``: |DUS accuracy - CE accuracy| on validation, in points; a gap of at most
    ``tolerance_examples`` examples passes too (on a split under 100 examples one point is less than
    one example: drug-reviews has 59, where 1 point alone would demand identical counts).
    ``confidence``: the closed range the median top-1 validation confidence must lie in.
    ``min_tasks``: a setting is plausible when it passes on at least this many of ``tasks``.
    """

    tasks: tuple[str, ...] = OFFLINE_TASKS
    lam_ce: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)
    tau_gate: tuple[float, ...] = (0.0, 0.3, 0.5)
    rho: tuple[float, ...] = (0.1, 0.5, 1.0)
    beta: tuple[float, ...] = (1.0, 2.0)
    gamma: float = 10.0
    lam_f: float = 1.0
    max_delta_points: float = 1.0
    tolerance_examples: int = 1  # added 2026-12-01 (docs/cud-method.md section 7.4)
    confidence: tuple[float, float] = (0.5, 0.9)
    min_tasks: int = 6
    seed: int = 0
    teacher: str = _CPU.teacher
    max_train: int | None = _CPU.max_train
    max_test: int | None = _CPU.max_test
    method: str = "cud"  # the method whose teacher recipe the grid varies

    def __post_init__(self) -> None:
        if not self.tasks or any(not getattr(self, p) for p in PARAMS):
            raise CudBenchError("the faithfulness grid needs at least one task and one value per hyperparameter")
        if not 1 <= self.min_tasks <= len(self.tasks):
            raise CudBenchError(f"min_tasks must lie in [1, {len(self.tasks)}], got {self.min_tasks}")

    def settings(self) -> list[dict[str, float]]:
        """Every grid point as {param: value}, in PARAMS order."""
        return [dict(zip(PARAMS, values)) for values in itertools.product(*(getattr(self, p) for p in PARAMS))]

    def variant(self, setting: dict[str, float]) -> str:
        """The method variant that trains this setting's teacher (gamma and lam_f pinned too)."""
        params = {**setting, "gamma": self.gamma, "lam_f": self.lam_f}
        return variant_name(self.method, {f"teacher.{k}": v for k, v in params.items()})

    def required(self, n_tasks: int) -> int:
        """Passes needed on ``n_tasks`` tasks: ``min_tasks`` on the full set; on a subset the same
        number of allowed failures (at least one pass), so a partial run is provisional, not looser."""
        if n_tasks == len(self.tasks):
            return self.min_tasks
        return max(1, n_tasks - (len(self.tasks) - self.min_tasks))


def with_grid(spec: FaithfulnessSpec, grid: dict[str, list[str]]) -> FaithfulnessSpec:
    """``spec`` with some axes replaced (``{"lam_ce": ["0.02", "0.05"]}``): a grid extension is a
    spec of its own, so its results are kept apart from the committed grid's (keyed by spec hash)."""
    unknown = sorted(set(grid) - set(PARAMS))
    if unknown:
        raise CudBenchError(f"faithfulness --grid: unknown hyperparameter(s) {unknown}; the grid's axes are {list(PARAMS)}")
    try:
        axes = {name: tuple(float(v) for v in values) for name, values in grid.items()}
    except ValueError as exc:
        raise CudBenchError(f"faithfulness --grid: values must be numbers ({exc})") from None
    return dataclasses.replace(spec, **axes)


def with_tasks(spec: FaithfulnessSpec, tasks: Sequence[str]) -> FaithfulnessSpec:
    """``spec`` judged on other tasks (a suite's tasks outside the offline seven): a spec of its own
    whose per-task selections (:func:`per_task_selection`) are what it is for; its region needs every one
    of its tasks, so it never stands in for the offline tasks' region."""
    return dataclasses.replace(spec, tasks=tuple(tasks), min_tasks=len(tasks))


def setting_label(setting: dict[str, float]) -> str:
    return ", ".join(f"{p}={setting[p]:g}" for p in PARAMS)


# -- the criterion, the region, the selection: pure functions of validation numbers ------
def judge(spec: FaithfulnessSpec, dus: dict[str, Any], ce: dict[str, Any]) -> dict[str, Any]:
    """One setting on one task: the accuracy gap to CE (exact, from correct counts) and the confidence range.

    ``dus``/``ce`` hold ``correct`` and ``n`` (validation) and, for ``dus``, ``median_confidence``."""
    if dus["n"] != ce["n"]:
        raise ValueError("DUS and CE teachers must be scored on the same validation split")
    n = dus["n"]
    delta = 100.0 * (dus["correct"] - ce["correct"]) / n
    gap = abs(dus["correct"] - ce["correct"])
    close = gap * 100 <= spec.max_delta_points * n or gap <= spec.tolerance_examples  # integer-exact at 1 point
    lo, hi = spec.confidence
    in_range = lo <= dus["median_confidence"] <= hi
    return {"delta_points": delta, "accuracy_ok": bool(close), "confidence_ok": bool(in_range), "pass": bool(close and in_range)}


def plausible_region(spec: FaithfulnessSpec, passes: dict[str, dict[str, bool]]) -> tuple[list[str], int]:
    """Settings (labels) passing on enough tasks, and that number. ``passes``: label -> task -> pass."""
    n_tasks = len({t for per_task in passes.values() for t in per_task})
    need = spec.required(n_tasks)
    return [label for label, per_task in passes.items() if sum(per_task.values()) >= need], need


def preference(setting: dict[str, float]) -> tuple[float, ...]:
    """The committed selection order (docs/cud-method.md, section 7): smallest lam_ce, tau_gate
    nearest 0.5, smallest rho, largest beta. Lower sorts first."""
    return (setting["lam_ce"], abs(setting["tau_gate"] - 0.5), setting["rho"], -setting["beta"])


def select(settings: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """The first setting of ``settings`` (the region) in :func:`preference` order; None if empty."""
    return min(settings, key=preference) if settings else None


def per_task_selection(report: dict[str, Any]) -> dict[str, dict[str, float] | None]:
    """Task -> the setting the committed order picks among those passing on that task alone (None: none passes).

    Why: the region (one setting for 6 of 7 tasks) is empty, and the default ``cud`` takes its DUS
    setting per task instead (docs/cud-method.md, section 7.3): the same criterion and order, applied
    to each task's own validation split."""
    return {r["task"]: select([row["setting"] for row in r["rows"] if row["pass"]]) for r in report["per_task"]}


def per_task_table(report_files: Sequence[Path]) -> dict[str, Any]:
    """The table the default ``cud`` reads (:mod:`cud_bench.method_defs.dus_per_task`): every task of the
    reports with its :func:`per_task_selection`. A task without a passing setting, or judged twice with
    different selections, is refused: the table must say one setting per task."""
    settings: dict[str, dict[str, float]] = {}
    for path in report_files:
        try:
            report = json.loads(Path(path).read_text())
            picked = per_task_selection(report)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CudBenchError(f"{path}: not a faithfulness report ({exc})") from None
        if not report.get("complete"):
            raise CudBenchError(f"{path}: the report is partial; finish its tasks first")
        for task, setting in picked.items():
            if setting is None:
                raise CudBenchError(f"{path}: no grid setting passes on {task}; the table has nothing to give it")
            if settings.setdefault(task, setting) != setting:
                raise CudBenchError(f"{path}: {task} was judged before with another selection ({setting_label(settings[task])})")
    return {
        "about": "per task, the DUS setting the default cud trains (docs/cud-method.md, section 7.3); written by "
        "`cud-bench faithfulness --update-table` from the reports below (cud_bench.faithfulness.per_task_table)",
        "reports": [str(p) for p in report_files],
        "settings": {task: {p: setting[p] for p in PARAMS} for task, setting in settings.items()},
    }


# -- training and scoring ---------------------------------------------------------------
def score_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Validation accuracy (correct count) and the median top-1 confidence of raw softmax outputs."""
    probs = calibration.apply_temperature(logits, 1.0)
    correct = int((probs.argmax(axis=1) == labels).sum())
    top1 = probs.max(axis=1)
    return {
        "correct": correct,
        "n": int(len(labels)),
        "accuracy": 100.0 * correct / len(labels),
        "median_confidence": float(np.median(top1)),
        "mean_confidence": float(top1.mean()),
    }


def train_task(spec: FaithfulnessSpec, task: str, group_size: int | None = None, progress: bool = False) -> dict[str, Any]:
    """CE teacher + every grid teacher on one task's training split, scored on its validation split."""
    from cud_bench.suites import model_presets
    from cud_bench.taskdata import Inputs, derive_seed, fit_many, prepare_task
    from cud_bench.train import predict_logits

    start = time.perf_counter()
    suite = dataclasses.replace(_CPU, tasks=(task,), max_train=spec.max_train, max_test=spec.max_test)
    data = prepare_task(task, suite)
    arch = model_presets.get(spec.teacher)()
    inputs = Inputs(progress)
    settings = spec.settings()
    recipes = [component("teacher", "ce")] + [get_method(spec.variant(s)).teacher for s in settings]
    seed = derive_seed("teacher", spec.seed, None)  # the seed TeacherStore gives a full-data teacher
    fitted = fit_many(arch, data, [r.build() for r in recipes], [seed] * len(recipes), inputs, [None] * len(recipes), group_size)
    x_val = inputs(arch, data.validation.texts)
    scores = [
        {**score_logits(predict_logits(arch, model, x_val), data.validation.labels), "best_epoch": card["best_epoch"]}
        for model, card in fitted
    ]
    ce, rows = scores[0], []
    for setting, recipe, score in zip(settings, recipes[1:], scores[1:]):
        rows.append({"setting": setting, "label": setting_label(setting), "recipe": recipe.label, **score, **judge(spec, score, ce)})
    return {"task": task, "subset": data.subset, "ce": {"recipe": recipes[0].label, **ce}, "rows": rows, "wall_s": time.perf_counter() - start}


def run_faithfulness(
    spec: FaithfulnessSpec,
    out: Path,
    tasks: Sequence[str] | None = None,
    group_size: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Train and judge every task (``tasks``: a subset of the spec's), write ``faithfulness.json`` and
    ``faithfulness.md`` under ``out``, and return the report."""
    chosen = tuple(tasks or spec.tasks)
    unknown = [t for t in chosen if t not in spec.tasks]
    if unknown:
        raise CudBenchError(f"faithfulness: task(s) {unknown} are not in the rule's tasks {list(spec.tasks)}")
    per_task = []
    out.mkdir(parents=True, exist_ok=True)
    for task in chosen:
        done = out / f"task-{task}-{spec.spec_hash()}.json"  # resumable: a finished task is kept, keyed by the spec
        if done.exists():
            result = json.loads(done.read_text())
            log(f"{task}: read from {done}")
        else:
            result = train_task(spec, task, group_size)
            write_json_atomic(done, result)
            log(f"{task}: {len(result['rows']) + 1} teachers in {result['wall_s']:.0f} s")
        per_task.append(result)
    report = summarise(spec, per_task)
    write_json_atomic(out / "faithfulness.json", report)
    write_bytes_atomic(out / "faithfulness.md", to_markdown(report).encode())
    return report


def summarise(spec: FaithfulnessSpec, per_task: list[dict[str, Any]]) -> dict[str, Any]:
    """The report: per-task results, each setting's pass count, the region and the selected setting."""
    settings = spec.settings()
    passes = {setting_label(s): {r["task"]: r["rows"][i]["pass"] for r in per_task} for i, s in enumerate(settings)}
    region, need = plausible_region(spec, passes)
    by_label = {setting_label(s): s for s in settings}
    chosen = select([by_label[label] for label in region])
    today = {p: get_method(spec.method).teacher.params[p] for p in PARAMS}
    today_label = setting_label(today)
    report = {
        "spec": dataclasses.asdict(spec),
        "spec_hash": spec.spec_hash(),
        "tasks_run": [r["task"] for r in per_task],
        "complete": len(per_task) == len(spec.tasks),
        "required_passes": need,
        "per_task": per_task,
        "passes": {label: sum(v.values()) for label, v in passes.items()},
        "region": region,
        "selected": None if chosen is None else {"setting": chosen, "label": setting_label(chosen), "variant": spec.variant(chosen)},
        "today": {"setting": today, "label": today_label, "in_grid": today_label in passes,
                  "passes": sum(passes[today_label].values()) if today_label in passes else None,
                  "in_region": today_label in region},
    }
    return {**report, "per_task_selected": per_task_selection(report)}


def to_markdown(report: dict[str, Any]) -> str:
    """Per setting and task: validation accuracy, Δ vs CE, median confidence, pass; then the region."""
    tasks = report["tasks_run"]
    lines = [
        f"Faithfulness grid (spec {report['spec_hash'][:12]}): tasks {', '.join(tasks)}"
        + ("" if report["complete"] else f" (partial: {len(tasks)} of {len(report['spec']['tasks'])} tasks)")
        + f"; a setting is plausible when it passes on at least {report['required_passes']} of {len(tasks)}.",
        "",
        *([] if tuple(report["spec"]["tasks"]) == OFFLINE_TASKS else [
            "Judged for the per-task selections below: these tasks are not the rule's seven, so the region of this "
            "report is not the plausible region of docs/cud-method.md.", ""]),
        "Each cell: validation accuracy % (Δ vs CE in points) / median top-1 confidence, ✓ pass, ✗ fail.",
        "",
        "| setting (lam_ce, tau_gate, rho, beta) | " + " | ".join(tasks) + " | passes |",
        "|---|" + "---|" * len(tasks) + "---|",
        "| CE teacher | " + " | ".join(f"{r['ce']['accuracy']:.1f} / {r['ce']['median_confidence']:.2f}" for r in report["per_task"]) + " | |",
    ]
    for i, label in enumerate(report["passes"]):
        cells = []
        for r in report["per_task"]:
            row = r["rows"][i]
            mark = "✓" if row["pass"] else "✗"
            cells.append(f"{row['accuracy']:.1f} ({row['delta_points']:+.1f}) / {row['median_confidence']:.2f} {mark}")
        setting = report["per_task"][0]["rows"][i]["setting"]
        short = ", ".join(f"{setting[p]:g}" for p in PARAMS)
        region = " **R**" if label in report["region"] else ""
        lines.append(f"| {short}{region} | " + " | ".join(cells) + f" | {report['passes'][label]} |")
    sel, today = report["selected"], report["today"]
    lines += [
        "",
        ("Plausible region (**R**)" if report["complete"] else "Provisional region (**R**, the settings not yet excluded: at most "
         f"{len(report['spec']['tasks']) - report['spec']['min_tasks']} failure so far; the remaining tasks can only shrink it)")
        + f": {len(report['region'])} setting(s)" + (f": {'; '.join(report['region'])}." if report["region"] else "."),
        f"Selected by the rule: {sel['label']} (`{sel['variant']}`)." if sel else "Selected by the rule: none (the region is empty).",
        (f"Release 1.0's setting ({today['label']}): passes on {today['passes']} of {len(tasks)} tasks, "
         + ("inside" if today["in_region"] else "outside") + " the region.") if today["in_grid"]
        else f"Release 1.0's setting ({today['label']}) is not in this grid.",
        "",
        "Per task (the same criterion and order on each task alone; how the default `cud` picks its DUS setting): "
        + "; ".join(f"{task} {setting_label(s) if s else 'none passes'}" for task, s in report["per_task_selected"].items()) + ".",
        "",
        "Time per task: " + ", ".join(f"{r['task']} {r['wall_s']:.0f} s" for r in report["per_task"]) + ".",
    ]
    return "\n".join(lines) + "\n"
