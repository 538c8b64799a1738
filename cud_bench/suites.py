"""Suites: named, frozen descriptions of a whole evaluation (what runs, on what, how often).

A suite expands into cells ``task × method × seed × target protocol × student
architecture``. Built-in suites are registered here; a user's suite is a YAML
file with the same fields (read with ``yaml.safe_load`` and validated).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry, did_you_mean
from cud_bench.specs import Spec

PROTOCOLS = ("in-sample", "cross-fit")
# Seeds of the CE teachers that define the model-defined ambiguous subset: never a training seed
# (a suite's seeds must avoid them), so that ensemble shares no teacher with any method.
ENSEMBLE_SEEDS = (1000, 1001, 1002)
# Fewest examples a shifted set needs to be scored (labelled sets, subsets, out-of-scope sets).
# Why 100: at n = 100 the standard error of an accuracy is up to 5 points, and a perfectly
# calibrated binary model (confidences uniform on [0.5, 1], labels drawn from them) scores a
# 15-bin ECE of 8.9 +- 2.4 points (16.0 +- 4.3 at n = 30, 4.0 at n = 500; 2,000 simulations),
# so a smaller set measures mostly its own sampling noise. It is skipped (the run log says so),
# never scored or pooled. A suite may set another minimum (min_set_size, in its settings hash).
MIN_SET_SIZE = 100
ALL_METHODS = ("ce", "kd", "ls", "focal", "ts", "cud", "cud-dus", "cud-wclip")


_context: list[str] = []  # the suite file being read, named in check_fields' errors


# -- the suite schema: one check of every field's type, range and uniqueness ----------------
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a suite name is a folder under --out
_NAME_LISTS = ("tasks", "methods", "protocols", "students", "shifts")
_INT_LISTS = {"seeds": 0, "ensemble_seeds": 0}  # field -> smallest allowed value
_CAPS = ("max_train", "max_test", "max_shift_examples")


def check_fields(suite: SuiteSpec, where: str) -> None:
    """Types, ranges, non-empty and duplicate-free lists, a path-safe name (no registry look-ups)."""

    def fail(field: str, why: str) -> None:
        raise CudBenchError(f"{where}: field {field!r} {why}")

    if not isinstance(suite.name, str) or not SAFE_NAME.fullmatch(suite.name) or ".." in suite.name:
        fail("name", f"must be a plain folder name (letters, digits, '.', '_', '-'; no '/' or '..'), got {suite.name!r}")
    for field in (*_NAME_LISTS, *_INT_LISTS):
        value = getattr(suite, field)
        if not isinstance(value, tuple):
            fail(field, f"must be a list, got {value!r} ({type(value).__name__})")
        if not value and field != "shifts":
            fail(field, "must not be empty")
        for i, item in enumerate(value):
            if field in _INT_LISTS:
                if isinstance(item, bool) or not isinstance(item, int):
                    fail(field, f"item {i} must be an integer, got {item!r} ({type(item).__name__})")
                if item < _INT_LISTS[field]:
                    fail(field, f"item {i} must be >= {_INT_LISTS[field]}, got {item}")
            elif not isinstance(item, str) or not item:
                fail(field, f"item {i} must be a name, got {item!r} ({type(item).__name__})")
        duplicates = sorted({str(v) for v in value if value.count(v) > 1})
        if duplicates:
            fail(field, f"lists {', '.join(duplicates)} more than once")
    bad = [p for p in suite.protocols if p not in PROTOCOLS]
    if bad:
        fail("protocols", f"has unknown target protocol {bad[0]!r}{did_you_mean(bad[0], PROTOCOLS)}; known: {list(PROTOCOLS)}")
    if not isinstance(suite.teacher, str) or not suite.teacher:
        fail("teacher", f"must be a model preset name, got {suite.teacher!r}")
    if isinstance(suite.n_folds, bool) or not isinstance(suite.n_folds, int) or suite.n_folds < 2:
        fail("n_folds", f"must be an integer >= 2, got {suite.n_folds!r}")
    for field in _CAPS:
        value = getattr(suite, field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            fail(field, f"must be a positive integer or null (no cap), got {value!r}")
    if isinstance(suite.min_set_size, bool) or not isinstance(suite.min_set_size, int) or suite.min_set_size < 1:
        fail("min_set_size", f"must be a positive integer, got {suite.min_set_size!r}")
    if not isinstance(suite.teacher_shifts, bool):
        fail("teacher_shifts", f"must be true or false, got {suite.teacher_shifts!r}")
    if not isinstance(suite.description, str):
        fail("description", f"must be a string, got {suite.description!r}")


def check_names(suite: SuiteSpec, where: str | None = None) -> None:
    """Every task, method (variants included), model preset and shift the suite names exists."""
    from cud_bench.data.tasks import get_task
    from cud_bench.methods import get_method
    from shifts import FAMILIES, shifts

    where = where or f"suite {suite.name!r}"

    def check(field: str, name: str, lookup: Callable[[str], Any]) -> None:
        try:
            lookup(name)
        except CudBenchError as exc:
            raise CudBenchError(f"{where}: field {field!r}: {exc}") from None

    for name in suite.tasks:
        check("tasks", name, get_task)
    for name in suite.methods:
        check("methods", name, get_method)
    check("teacher", suite.teacher, model_presets.get)
    for name in suite.students:
        check("students", name, model_presets.get)
    known_shifts = sorted({*FAMILIES, *shifts.names()})
    for name in suite.shifts:
        if name not in known_shifts:
            raise CudBenchError(
                f"{where}: field 'shifts': unknown shift or shift family {name!r}{did_you_mean(name, known_shifts)} "
                f"(families: {', '.join(FAMILIES)}; `cud-bench shifts` lists the shifts)"
            )


@dataclasses.dataclass(frozen=True)
class SuiteSpec(Spec):
    """Everything that decides a suite's numbers.

    ``max_train``/``max_test`` cap each task's splits by a deterministic stratified
    subsample (None: the whole split); ``max_shift_examples`` caps each shifted
    evaluation set further (smoke only; None keeps each shift's own cap, e.g. the
    corruptions' power-sized :data:`shifts.corruption.SIZE`). ``min_set_size``: a
    shifted set with fewer examples is not scored (see :mod:`cud_bench.scoring`).
    ``shifts`` lists shift ids or families to score (empty: clean test only).
    ``ensemble_seeds`` are the seeds of the CE teachers whose disagreement defines
    the model-defined ambiguous subset; fixed per suite, so ``--seeds`` does not
    change that subset, and disjoint from ``seeds``, so no teacher a method
    distils helps pick the examples it is scored on. ``teacher_shifts``: whether the
    full-data teacher is scored on every shifted set too (informational: releases keep
    only its clean scores); off where the teacher's encoder would cost hours on the sets.
    """

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    protocols: tuple[str, ...] = PROTOCOLS
    teacher: str = "mlp-l6"
    students: tuple[str, ...] = ("mlp-l3", "hashed-bag")
    n_folds: int = 5
    max_train: int | None = None
    max_test: int | None = None
    shifts: tuple[str, ...] = ()
    max_shift_examples: int | None = None
    min_set_size: int = MIN_SET_SIZE
    ensemble_seeds: tuple[int, ...] = ENSEMBLE_SEEDS
    teacher_shifts: bool = dataclasses.field(default=True, metadata={"hash": "unless-default"})
    description: str = dataclasses.field(default="", metadata={"hash": False})

    def __post_init__(self) -> None:
        check_fields(self, _context[-1] if _context else f"suite {self.name!r}")
        shared = sorted(set(self.seeds) & set(self.ensemble_seeds))
        if shared:
            raise CudBenchError(
                f"suite {self.name!r}: seed(s) {shared} are also ensemble seeds; the ambiguity ensemble must be "
                f"disjoint from every teacher a method distils (ensemble seeds: {list(self.ensemble_seeds)})"
            )

    def restrict(self, *, tasks=None, methods=None, seeds=None) -> "SuiteSpec":
        """The same suite on a subset of its tasks, methods or seeds (CLI filters)."""
        changes: dict[str, Any] = {}
        for field, chosen in (("tasks", tasks), ("methods", methods), ("seeds", seeds)):
            if chosen:
                changes[field] = tuple(chosen)
        return dataclasses.replace(self, **changes) if changes else self


suites: Registry[SuiteSpec] = Registry("suite")

suites.register(
    "smoke",
    SuiteSpec(
        name="smoke",
        tasks=("rt-polarity", "tweets-airline"),
        methods=ALL_METHODS,
        seeds=(0, 1),
        protocols=("cross-fit",),
        students=("mlp-l3", "hashed-bag"),
        n_folds=3,
        max_train=600,
        max_test=300,
        shifts=("corruption", "domain", "long-tail", "ambiguous", "held-out"),
        max_shift_examples=100,  # the minimum set size: CI's encoding time, not power
        ensemble_seeds=(1000, 1001),
        description="CI's end-to-end check: 2 short-text tasks, every method, cross-fitted targets, 2 seeds, "
        "small deterministic subsets, every applicable shift",
    ),
)
suites.register(
    "cpu",
    SuiteSpec(
        name="cpu",
        # Longest texts first: with --jobs, the last task to finish is then a quick one.
        tasks=(
            "20newsgroups",
            "reuters-r52",
            "20newsgroups-15groups",
            "reuters-r8",
            "bbc-news",
            "drug-reviews",
            "tweets-airline",
            "tweets-sentiment",
            "rt-polarity",
        ),
        methods=(*ALL_METHODS, "cud-lamce0"),  # release 1.0's DUS setting beside the faithful one
        seeds=(0, 1, 2, 3, 4),  # 5 seeds: what the simulated power table needs for a 2-point ECE difference
        protocols=PROTOCOLS,
        # The testbed rule's choice (docs/cud-method.md section 8): under an all-mpnet teacher KD beats the
        # no-teacher student where under MiniLM-L6 it never did. Its encoder costs about 6x MiniLM-L6's, hours on
        # the shifted sets, so the teacher is scored on clean data only (releases keep nothing else of it).
        teacher="mlp-mpnet",
        teacher_shifts=False,
        students=("mlp-l3", "hashed-bag"),
        n_folds=5,
        max_train=2000,
        max_test=500,
        shifts=("corruption", "domain", "long-tail", "ambiguous", "held-out"),
        description="the main job: the seven offline tasks plus the derived tasks that carry the tweet-domain "
        "and held-out-class shifts; frozen features (all-mpnet teacher, MiniLM-L3 and hashed-bag students), both "
        "protocols, 5 seeds",
    ),
)
suites.register(
    "finetune",
    SuiteSpec(
        name="finetune",
        tasks=("banking77", "clinc150", "trec", "ag-news", "massive"),
        methods=ALL_METHODS,
        seeds=(0, 1, 2),
        protocols=("in-sample",),
        teacher="finetune-mpnet",
        students=("finetune-l6",),
        shifts=("corruption",),
        description="the paper's setup (GPU, hub data): end-to-end fine-tuning, in-sample targets, 3 seeds",
    ),
)


def load_suite(name_or_path: str) -> SuiteSpec:
    """A registered suite by name, or a YAML suite file (safe_load; every field validated)."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        return suites.get(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CudBenchError(f"cannot read suite file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise CudBenchError(f"suite file {path}: expected a mapping of suite fields")
    fields = {f.name: f for f in dataclasses.fields(SuiteSpec)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise CudBenchError(f"suite file {path}: unknown field(s) {unknown}; known: {sorted(fields)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    values.setdefault("name", path.stem)
    missing = sorted(f.name for f in fields.values() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values)
    if missing:
        raise CudBenchError(f"suite file {path}: missing field(s) {missing}")
    try:
        with _where(f"suite file {path}"):
            suite = SuiteSpec(**values)
    except TypeError as exc:
        raise CudBenchError(f"suite file {path}: {exc}") from None
    check_names(suite, f"suite file {path}")
    return suite


@contextlib.contextmanager
def _where(where: str) -> Iterator[None]:
    """Name the file in the errors :func:`check_fields` raises while a suite file is read."""
    _context.append(where)
    try:
        yield
    finally:
        _context.pop()


# -- YAML: a suite written as the file `cud-bench run --suite FILE` reads ------------------
FIELD_HELP = {
    "name": "folder name under --out (letters, digits, '.', '_', '-')",
    "tasks": "task names (`cud-bench tasks`)",
    "methods": "method names or variants such as cud+gamma=5 (`cud-bench methods`)",
    "seeds": "training seeds: non-negative integers, each once",
    "protocols": f"target protocols: {', '.join(PROTOCOLS)}",
    "teacher": "the teacher's model preset",
    "students": "student model presets",
    "n_folds": "folds of cross-fitted targets (>= 2)",
    "max_train": "cap on each task's training split (positive integer; null: the whole split)",
    "max_test": "cap on validation and test (positive integer; null: the whole split)",
    "shifts": "shift families or shift names to score (`cud-bench shifts --task NAME`); [] for clean test only",
    "max_shift_examples": "cap on each shifted set (null: each shift's own cap)",
    "min_set_size": f"sets with fewer examples are not scored nor pooled (default {MIN_SET_SIZE})",
    "ensemble_seeds": "seeds of the CE teachers whose disagreement defines the ambiguous subset",
    "teacher_shifts": "score the full-data teacher on every shifted set too (true/false; releases keep only its clean scores)",
    "description": "free text (not part of the spec hash)",
}


def to_yaml(suite: SuiteSpec) -> str:
    """The suite as a commented YAML file that :func:`load_suite` reads back to the same suite."""
    lines = [f"# cud-bench suite {suite.name!r}: edit, save as NAME.yaml, run with `cud-bench run --suite NAME.yaml`"]
    for field in dataclasses.fields(SuiteSpec):
        value = getattr(suite, field.name)
        plain = list(value) if isinstance(value, tuple) else value
        text = yaml.safe_dump({field.name: plain}, default_flow_style=True, sort_keys=False, width=10_000).strip()
        hint = FIELD_HELP[field.name]
        if field.name in ("teacher", "students"):
            hint += f" ({', '.join(model_presets.names())})"
        lines += [f"# {field.name}: {hint}", text.removeprefix("{").removesuffix("}")]
    return "\n".join(lines) + "\n"


# -- model presets: the architectures a suite names as its teacher and students ----------
def _preset(arch: str, **params: Any) -> Callable[[], Any]:
    def build() -> Any:
        from cud_bench.models.architectures import architectures

        return architectures.get(arch)(**params)

    return build


model_presets: Registry[Callable[[], Any]] = Registry("model preset")
# The frozen-feature presets read each text's first 64 word pieces (see MLPSpec.max_length).
model_presets.register("mlp-l6", _preset("mlp", encoder="minilm-l6", max_length=64))
model_presets.register("mlp-l3", _preset("mlp", encoder="minilm-l3", max_length=64))
model_presets.register("hashed-bag", _preset("hashed-bag"))
# A stronger frozen-feature teacher (all-mpnet-base-v2, about 6x MiniLM-L6's encoding time): the testbed rule's candidate.
model_presets.register("mlp-mpnet", _preset("mlp", encoder="mpnet-base", max_length=64))
model_presets.register("finetune-l6", _preset("finetune", encoder="minilm-l6"))
model_presets.register("finetune-mpnet", _preset("finetune", encoder="mpnet-base"))
