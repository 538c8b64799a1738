"""Run a suite: expand it into cells, train each teacher once, train and score the students.

Cells are ``task × seed × target protocol × student architecture × method``.
Every distinct teacher (task, teacher recipe, seed, architecture, fold) is
trained exactly once and cached on disk (weights and logits); every method that
needs it reuses it. A cell is written as one record (:mod:`cud_bench.records`)
when it is complete, so an interrupted run resumes by skipping finished cells
and never half-writes one.

Target protocols (see docs/architecture.md):
- ``in-sample``: the full-data teacher labels its own training set (the paper's).
- ``cross-fit``: K teachers of the same recipe, each trained without one fold,
  label that fold; the full-data teacher is still the one scored on test.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from cud_bench import calibration, metrics
from cud_bench.data.splits import stratified_holdout
from cud_bench.data.tasks import TaskSpec, get_task, load_task
from cud_bench.errors import CudBenchError
from cud_bench.io import atomic_path, cache_dir, write_json_atomic
from cud_bench.methods import MethodSpec, get_method
from cud_bench.models.architectures import Architecture, ModelInputs
from cud_bench.models.features import encode
from cud_bench.records import CellKey, is_done, provenance, write_record
from cud_bench.recipes import Component, TeacherOutputs
from cud_bench.suites import SuiteSpec, model_presets
from cud_bench.train import predict_logits, train

log = logging.getLogger(__name__)
TEACHER_CACHE_VERSION = 1


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from a tuple of names and numbers: stable across processes and machines."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "big") >> 1


# -- data --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Split:
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's splits after the suite's caps; ``subset`` names the caps (part of every cache key)."""

    spec: TaskSpec
    train: Split
    validation: Split
    test: Split
    subset: str

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes


def prepare_task(name: str, suite: SuiteSpec) -> TaskData:
    """Load a task and apply the suite's caps with a deterministic stratified subsample."""
    ds = load_task(name)
    caps = {"train": suite.max_train, "validation": suite.max_test, "test": suite.max_test}
    splits = {}
    for split, cap in caps.items():
        d = ds[split]
        labels = np.asarray(d["label"], dtype=np.int64)
        idx = np.arange(len(labels))
        if cap is not None and cap < len(labels):
            idx = stratified_holdout(labels, cap / len(labels), seed=(derive_seed("cap", name, split),))[1]
        ids, texts = d["id"], d["text"]
        splits[split] = Split(tuple(ids[i] for i in idx), tuple(texts[i] for i in idx), labels[idx])
    subset = f"train<={suite.max_train},test<={suite.max_test}"
    return TaskData(get_task(name).spec, splits["train"], splits["validation"], splits["test"], subset)


class Inputs:
    """Prepared model inputs per (architecture, text list), memoised for a run; features come from the cache."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self._memo: dict[tuple[str, int], ModelInputs] = {}

    def __call__(self, arch: Architecture, texts: tuple[str, ...]) -> ModelInputs:
        key = (arch.spec.spec_hash(), hash(texts))
        if key not in self._memo:
            feats = None
            if arch.needs_features:
                feats = encode(arch.needs_features, list(texts), progress=self.progress)
            self._memo[key] = arch.prepare(list(texts), feats)
        return self._memo[key]


# -- trained models ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained network, the logits the runner needs, and its post-hoc temperature."""

    model: torch.nn.Module
    logits: dict[str, np.ndarray]  # split name -> (n, C) float32
    card: dict[str, Any]  # TrainResult as a dict (history, best epoch, wall time...)
    temperature: float  # fitted on the clean validation split only


def fit(
    arch: Architecture,
    data: TaskData,
    train_idx: np.ndarray,
    loss_fn: Callable,
    seed: int,
    inputs: Inputs,
    targets: np.ndarray | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    train_texts = tuple(data.train.texts[i] for i in train_idx)
    x_train = inputs(arch, train_texts)
    x_val = inputs(arch, data.validation.texts)
    model = arch.build(data.num_classes, seed)
    result = train(
        arch, model, x_train, data.train.labels[train_idx], loss_fn, x_val, data.validation.labels, seed=seed, targets=targets
    )
    return model, result.to_dict()


class TeacherStore:
    """Trains each distinct teacher once and keeps it on disk: weights, logits and training card.

    The key is (task spec, subset, recipe spec, architecture spec, seed, fold,
    number of folds). A teacher's directory is complete when its ``card.json``
    exists (written last); an incomplete or unreadable one is retrained.
    """

    def __init__(self, arch: Architecture, n_folds: int, inputs: Inputs, root: Path | None = None) -> None:
        self.arch, self.n_folds, self.inputs = arch, n_folds, inputs
        self.root = root or cache_dir() / "teachers"
        self.trained: collections.Counter[str] = collections.Counter()
        self.reused: collections.Counter[str] = collections.Counter()
        self._memo: dict[str, Trained] = {}
        self._shift_memo: dict[tuple[str, str], dict[str, Any]] = {}

    def key(self, data: TaskData, recipe: Component, seed: int, fold: int | None) -> str:
        parts = {
            "v": TEACHER_CACHE_VERSION,
            "task": data.spec.spec_hash(),
            "subset": data.subset,
            "recipe": recipe.spec_hash(),
            "arch": self.arch.spec.spec_hash(),
            "seed": seed,
            "fold": fold,
            "n_folds": self.n_folds if fold is not None else None,
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        return f"{data.spec.name}-{recipe.name}-s{seed}-{'full' if fold is None else f'f{fold}'}-{digest}"

    def full(self, data: TaskData, recipe: Component, seed: int) -> Trained:
        """The teacher trained on the whole training split: it labels (in-sample) and is scored."""
        return self._get(data, recipe, seed, None)

    def out_of_fold(self, data: TaskData, recipe: Component, seed: int) -> np.ndarray:
        """Cross-fitted logits on the training split: each fold labelled by a teacher that never saw it."""
        oof = np.zeros((len(data.train.labels), data.num_classes), dtype=np.float32)
        for fold, held in enumerate(self.folds(data, seed)):
            oof[held] = self._get(data, recipe, seed, fold).logits["heldout"]
        return oof

    def folds(self, data: TaskData, seed: int) -> list[np.ndarray]:
        """Stratified folds of the training split: within each class, a seeded permutation dealt round-robin."""
        rng = np.random.default_rng(derive_seed("folds", data.spec.name, data.subset, seed))
        assignment = np.empty(len(data.train.labels), dtype=np.int64)
        for c in np.unique(data.train.labels):
            members = np.flatnonzero(data.train.labels == c)
            assignment[members[rng.permutation(len(members))]] = np.arange(len(members)) % self.n_folds
        return [np.flatnonzero(assignment == k) for k in range(self.n_folds)]

    def shift_scores(self, data: TaskData, recipe: Component, seed: int, shift_sets: ShiftSets) -> dict[str, Any]:
        """The full-data teacher's scores on every shifted set (computed once per teacher and run)."""
        key = ("shifts", self.key(data, recipe, seed, None))
        if key not in self._shift_memo:
            teacher = self.full(data, recipe, seed)
            self._shift_memo[key] = shift_sets.score(self.arch, teacher.model, teacher.logits["test"], teacher.temperature, self.inputs)[0]
        return self._shift_memo[key]

    def seed_ensemble(self, data: TaskData, seeds: tuple[int, ...]) -> list[np.ndarray]:
        """Full-test-split probabilities of the CE teachers of every seed (for model-defined ambiguity)."""
        from cud_bench.recipes import component

        full_test = load_task(data.spec.name)["test"]["text"]
        x = self.inputs(self.arch, tuple(full_test))
        ce = component("teacher", "ce")
        return [
            calibration.apply_temperature(predict_logits(self.arch, self.full(data, ce, seed).model, x), 1.0)
            for seed in seeds
        ]

    def _get(self, data: TaskData, recipe: Component, seed: int, fold: int | None) -> Trained:
        key = self.key(data, recipe, seed, fold)
        if key in self._memo:
            return self._memo[key]
        folder = self.root / key
        loaded = self._load(folder, data)
        if loaded is None:
            loaded = self._train(folder, data, recipe, seed, fold)
            self.trained[recipe.name] += 1
        else:
            self.reused[recipe.name] += 1
        model, logits, card = loaded
        T = calibration.fit_temperature(logits["validation"], data.validation.labels, split="validation")
        self._memo[key] = Trained(model, logits, card, T)
        return self._memo[key]

    def _train(self, folder: Path, data: TaskData, recipe: Component, seed: int, fold: int | None) -> tuple:
        n = len(data.train.labels)
        if fold is None:
            train_idx, held = np.arange(n), None
        else:
            held = self.folds(data, seed)[fold]
            train_idx = np.setdiff1d(np.arange(n), held)
        t_seed = derive_seed("teacher", seed, fold)
        model, card = fit(self.arch, data, train_idx, recipe.build(), t_seed, self.inputs)
        logits = {"validation": predict_logits(self.arch, model, self.inputs(self.arch, data.validation.texts))}
        if fold is None:
            logits["train"] = predict_logits(self.arch, model, self.inputs(self.arch, data.train.texts))
            logits["test"] = predict_logits(self.arch, model, self.inputs(self.arch, data.test.texts))
        else:
            logits["heldout"] = predict_logits(self.arch, model, self.inputs(self.arch, tuple(data.train.texts[i] for i in held)))
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        with atomic_path(folder / "logits.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **logits)
        write_json_atomic(folder / "card.json", card)  # last: marks the teacher complete
        return model, logits, card

    def _load(self, folder: Path, data: TaskData) -> tuple | None:
        if not (folder / "card.json").exists():
            return None
        try:
            card = json.loads((folder / "card.json").read_text())
            with np.load(folder / "logits.npz", allow_pickle=False) as z:
                logits = {k: z[k] for k in z.files}
            model = self.arch.build(data.num_classes, 0)
            model.load_state_dict(load_file(str(folder / "model.safetensors")))
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("teacher cache %s is unreadable (%s); retraining it", folder, exc)
            (folder / "card.json").unlink(missing_ok=True)
            return None
        return model, logits, card


# -- scoring -----------------------------------------------------------------------------
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

    Subset shifts index the task's full clean test split; they are mapped onto
    the (possibly capped) test split the runner scores, by example id.
    """

    def __init__(self, suite: SuiteSpec, data: TaskData, teacher_probs: Callable[[], list[np.ndarray]]) -> None:
        from shifts import shifts

        self.data = data
        self.sets: list[Any] = []
        position = {id_: i for i, id_ in enumerate(data.test.ids)}
        for _, shift in shifts.items():
            spec = shift.spec
            if not (spec.family in suite.shifts or spec.name in suite.shifts) or not shift.applies_to(data.spec.name):
                continue
            extra = {"teacher_probs": teacher_probs()} if "teacher_probs" in spec.requires else {}
            for severity in spec.severities:
                shifted = shift.apply(data.spec.name, severity, seed=0, **extra)
                if shifted.kind == "subset":
                    rows = np.array([position[i] for i in shifted.ids if i in position], dtype=np.int64)
                    shifted = dataclasses.replace(shifted, ids=tuple(data.test.ids[r] for r in rows), indices=tuple(rows))
                elif suite.max_shift_examples is not None and len(shifted) > suite.max_shift_examples:
                    n = suite.max_shift_examples  # a capped set's first n examples are a deterministic sample
                    shifted = dataclasses.replace(
                        shifted, ids=shifted.ids[:n], texts=shifted.texts[:n], labels=shifted.labels[:n]
                    )
                if len(shifted):
                    self.sets.append(shifted)

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
            else:
                results[shifted.shift][str(shifted.severity)] = {**ood_scores(test_logits, logits, T), "kind": "out-of-scope"}
            predictions[f"{key}/probs"] = calibration.apply_temperature(logits, 1.0)
        return dict(results), predictions


def corruption_summary(shift_scores: dict[str, dict[str, Any]], clean_ece: float) -> dict[str, Any] | None:
    """Mean and worst ECE over corruptions and the area under ECE against severity (raw and post-TS)."""
    from shifts import corruption_figures, get_shift

    corrupt = {name: by_sev for name, by_sev in shift_scores.items() if get_shift(name).spec.family == "corruption"}
    if not corrupt:
        return None
    out = {}
    for variant in ("raw", "ts"):
        grid = {(name, int(sev)): s[variant][ECE] for name, by_sev in corrupt.items() for sev, s in by_sev.items()}
        fig = corruption_figures(grid, clean=clean_ece if variant == "raw" else None)
        out[variant] = {"mean_ece": fig.mean, "worst_ece": fig.worst, "worst_at": list(fig.worst_at), "ece_severity_auc": fig.auc}
    return out


ECE = "ece/uniform/15/l1"


# -- the run -----------------------------------------------------------------------------
@dataclasses.dataclass
class RunSummary:
    out_dir: Path
    cells_total: int = 0
    cells_done_before: int = 0
    cells_written: int = 0
    teachers_trained: dict[str, int] = dataclasses.field(default_factory=dict)
    teachers_reused: dict[str, int] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0

    def report(self) -> str:
        """The run log's summary: cells, and how often each teacher recipe was trained or reused."""
        recipes = sorted(set(self.teachers_trained) | set(self.teachers_reused))
        teachers = ", ".join(
            f"{r}: trained {self.teachers_trained.get(r, 0)}, reused from cache {self.teachers_reused.get(r, 0)}"
            for r in recipes
        )
        return (
            f"cells: {self.cells_total} in suite, {self.cells_done_before} already done, {self.cells_written} written\n"
            f"teachers (one per task, recipe, seed, fold): {teachers or 'none needed'}\n"
            f"records: {self.out_dir}\nwall time: {self.wall_s:.1f} s"
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


def run_suite(
    suite: SuiteSpec, out_dir: Path, *, progress: bool = True, teacher_cache: Path | None = None
) -> RunSummary:
    """Run every missing cell of ``suite`` and write its record under ``out_dir/<suite>/records``.

    ``teacher_cache`` overrides where trained teachers are kept (default: ``<cache>/teachers``).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    for name in suite.methods:
        get_method(name)  # unknown names fail before any work
    for name in suite.tasks:
        get_task(name)
    cells = expand(suite)
    summary = RunSummary(out_dir, cells_total=len(cells))
    todo = [c for c in cells if not is_done(out_dir, c)]
    summary.cells_done_before = len(cells) - len(todo)
    inputs = Inputs(progress)
    teachers = TeacherStore(model_presets.get(suite.teacher)(), suite.n_folds, inputs, teacher_cache)
    students = {name: model_presets.get(name)() for name in suite.students}
    data: TaskData | None = None
    bar = tqdm(todo, desc=f"suite {suite.name}", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(f"{cell.task} {cell.method} {cell.student} {cell.protocol} s{cell.seed}")
        if data is None or data.spec.name != cell.task:
            data = prepare_task(cell.task, suite)
            shift_sets = ShiftSets(suite, data, lambda: teachers.seed_ensemble(data, suite.ensemble_seeds))
        record, predictions = run_cell(cell, suite, data, teachers, students[cell.student], inputs, shift_sets)
        write_record(out_dir, cell, record, predictions)
        summary.cells_written += 1
    summary.teachers_trained = dict(teachers.trained)
    summary.teachers_reused = dict(teachers.reused)
    summary.wall_s = time.perf_counter() - start
    return summary


def run_cell(
    cell: CellKey,
    suite: SuiteSpec,
    data: TaskData,
    teachers: TeacherStore,
    arch: Architecture,
    inputs: Inputs,
    shift_sets: ShiftSets,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train and score one student (and report its teacher); returns the record and its predictions."""
    wall: dict[str, float] = {}
    method = get_method(cell.method)
    clock = time.perf_counter()
    teacher_part, targets = None, None
    if method.teacher is not None:
        teacher = teachers.full(data, method.teacher, cell.seed)
        train_logits = teacher.logits["train"]
        if cell.protocol == "cross-fit":
            train_logits = teachers.out_of_fold(data, method.teacher, cell.seed)
        wall["teacher"] = time.perf_counter() - clock
        clock = time.perf_counter()
        target = method.transform.build()(
            TeacherOutputs(train_logits, data.train.labels, teacher.logits["validation"], data.validation.labels)
        )
        targets = target.probs
        wall["targets"] = time.perf_counter() - clock
        teacher_part = {
            "recipe": method.teacher.label,
            "clean": scores(teacher.logits["test"], data.test.labels, teacher.temperature),
            "shifts": teachers.shift_scores(data, method.teacher, cell.seed, shift_sets),
            "train_accuracy": float(np.mean(teacher.logits["train"].argmax(1) == data.train.labels)),
            "targets": {
                "rows_changed": target.rows_changed,
                "temperature": target.temperature,
                "accuracy": float(np.mean(targets.argmax(1) == data.train.labels)),
                "mean_confidence": float(targets.max(1).mean()),
            },
            "training": teacher.card,
        }
    clock = time.perf_counter()
    model, card = fit(
        arch, data, np.arange(len(data.train.labels)), method.student.build(), derive_seed("student", cell.seed), inputs, targets
    )
    wall["student"] = time.perf_counter() - clock
    clock = time.perf_counter()
    val_logits = predict_logits(arch, model, inputs(arch, data.validation.texts))
    test_logits = predict_logits(arch, model, inputs(arch, data.test.texts))
    T = calibration.fit_temperature(val_logits, data.validation.labels, split="validation")
    clean = scores(test_logits, data.test.labels, T)
    shift_scores, shift_predictions = shift_sets.score(arch, model, test_logits, T, inputs)
    student_part = {
        "clean": clean,
        "shifts": shift_scores,
        "corruption_summary": corruption_summary(shift_scores, clean["raw"][ECE]),
    }
    wall["scoring"] = time.perf_counter() - clock
    record = {
        "specs": _specs(suite, data, method, teachers.arch, arch),
        "student": student_part,
        "teacher": teacher_part,
        "training": card,
        "provenance": provenance(wall),
    }
    predictions = {
        "clean/probs": calibration.apply_temperature(test_logits, 1.0),
        "clean/labels": data.test.labels,
        **shift_predictions,
    }
    return record, predictions


def _specs(suite: SuiteSpec, data: TaskData, method: MethodSpec, teacher: Architecture, student: Architecture) -> dict:
    def entry(spec: Any) -> dict:
        return {"hash": spec.spec_hash(), "spec": spec.to_dict()}

    return {
        "task": {**entry(data.spec), "id": data.spec.id, "subset": data.subset},
        "method": entry(method),
        "suite": entry(suite),
        "teacher_arch": entry(teacher.spec),
        "student_arch": entry(student.spec),
    }
