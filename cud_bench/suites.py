"""Suites: named, frozen descriptions of a whole evaluation (what runs, on what, how often).

A suite expands into cells ``task × method × seed × target protocol × student
architecture``. Built-in suites are registered here; a user's suite is a YAML
file with the same fields (read with ``yaml.safe_load`` and validated).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import yaml

from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry
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
    distils helps pick the examples it is scored on.
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
    description: str = dataclasses.field(default="", metadata={"hash": False})

    def __post_init__(self) -> None:
        for field in ("tasks", "methods", "seeds", "protocols", "students"):
            if not getattr(self, field):
                raise CudBenchError(f"suite {self.name!r}: {field} must not be empty")
        bad = sorted(set(self.protocols) - set(PROTOCOLS))
        if bad:
            raise CudBenchError(f"suite {self.name!r}: unknown target protocol {bad}; known: {list(PROTOCOLS)}")
        if self.n_folds < 2:
            raise CudBenchError(f"suite {self.name!r}: n_folds must be at least 2")
        shared = sorted(set(self.seeds) & set(self.ensemble_seeds))
        if shared:
            raise CudBenchError(
                f"suite {self.name!r}: seed(s) {shared} are also ensemble seeds; the ambiguity ensemble must be "
                f"disjoint from every teacher a method distils (ensemble seeds: {list(self.ensemble_seeds)})"
            )
        if self.min_set_size < 1 or (self.max_shift_examples is not None and self.max_shift_examples < 1):
            raise CudBenchError(f"suite {self.name!r}: min_set_size and max_shift_examples must be positive")

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
        methods=ALL_METHODS,
        seeds=(0, 1, 2),
        protocols=PROTOCOLS,
        students=("mlp-l3", "hashed-bag"),
        n_folds=5,
        max_train=2000,
        max_test=500,
        shifts=("corruption", "domain", "long-tail", "ambiguous", "held-out"),
        description="the main job: the seven offline tasks plus the derived tasks that carry the tweet-domain "
        "and held-out-class shifts; frozen MiniLM features, both protocols, both students, 3 seeds",
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
    try:
        return SuiteSpec(**values)
    except TypeError as exc:
        raise CudBenchError(f"suite file {path}: {exc}") from None


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
model_presets.register("finetune-l6", _preset("finetune", encoder="minilm-l6"))
model_presets.register("finetune-mpnet", _preset("finetune", encoder="mpnet-base"))
