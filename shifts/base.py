"""The shift registry's building blocks: :class:`ShiftSpec`, :class:`ShiftedSet` and :class:`Shift`.

A shift turns a task into an evaluation set that differs from the clean test
set in one named way. Whatever the family, the runner receives one of three
shapes (``ShiftSpec.kind``), so it scores every shift with the same code:

* ``labelled``: new texts with labels in the task's label space (corrupted
  test texts, another domain's texts, ...);
* ``subset``: positions in the clean test split the shift was given
  (:class:`ScoredSplits`; class-frequency buckets, ambiguous examples, the clean
  originals of corrupted texts): the runner reuses the clean predictions;
* ``out-of-scope``: texts with no in-scope label, for detecting them.

The runner gives every shift the splits the suite actually uses after its caps
(:class:`ScoredSplits`: the test examples it scores, the training labels its
models learn from); called without them, a shift uses the task's whole splits.

Adding a shift is one module in :mod:`shifts.defs` that calls
:func:`register_shift`; code outside this repository can use the entry-point
group ``cud_bench.shifts``.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from typing import Any, Sequence

import numpy as np

from cud_bench.data.tasks import get_task
from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry
from cud_bench.specs import Spec

# "reference": clean sets scored beside a family's shifted sets so that shifted minus clean is
# paired example by example (the clean originals of the corrupted texts); never a shift itself.
FAMILIES = ("corruption", "domain", "long-tail", "ambiguous", "held-out", "reference")
KINDS = ("labelled", "subset", "out-of-scope")
EVERY_TASK = "*"
INPUTS = ("teacher_probs",)  # what a shift may ask the runner for, besides the task


@dataclasses.dataclass(frozen=True)
class ShiftSpec(Spec):
    """Everything that defines a shift's evaluation sets: change a hashed field, bump the version.

    ``tasks`` are the task names it applies to (``("*",)``: every task).
    ``severities`` are 1, 2, ...; ``levels`` is either empty (one setting) or
    the parameter each severity sets, strictly monotone in severity (a rate
    grows, a threshold falls), in the unit ``level_meaning`` names. ``max_examples`` caps each set (chosen
    deterministically, see :func:`shifts.selection.first_by_hash`); ``None``:
    no cap. ``requires`` names runner inputs the shift needs (see
    :data:`INPUTS`). ``params`` pins every other setting (augmenter options,
    keyword rules, group lists) as ``(key, value)`` pairs.
    """

    name: str
    version: int
    family: str
    kind: str
    tasks: tuple[str, ...]
    severities: tuple[int, ...]
    levels: tuple[float, ...]
    max_examples: int | None
    source: str
    requires: tuple[str, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    level_meaning: str = dataclasses.field(default="", metadata={"hash": False})
    description: str = dataclasses.field(default="", metadata={"hash": False})

    def __post_init__(self) -> None:
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {FAMILIES}")
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {KINDS}")
        if not self.tasks:
            problems.append("it applies to no task")
        if self.severities != tuple(range(1, len(self.severities) + 1)):
            problems.append(f"severities must be 1, 2, ..., got {self.severities}")
        if self.levels and len(self.levels) != len(self.severities):
            problems.append("levels must be empty or one per severity")
        steps = {(b > a) - (b < a) for a, b in itertools.pairwise(self.levels)}
        if steps not in (set(), {1}, {-1}):
            problems.append(f"levels must be strictly monotone in severity, got {self.levels}")
        if self.max_examples is not None and self.max_examples < 1:
            problems.append("max_examples must be positive or None")
        if set(self.requires) - set(INPUTS):
            problems.append(f"requires {self.requires}, but the runner only provides {INPUTS}")
        if problems:
            raise ValueError(f"shift {self.name!r}: " + "; ".join(problems))

    @property
    def id(self) -> str:
        """Versioned id such as ``char-keyboard@v1``."""
        return f"{self.name}@v{self.version}"


@dataclasses.dataclass(frozen=True)
class ShiftedSet:
    """One evaluation set: a shift applied to a task at a severity.

    ``ids`` name the examples (for per-example records). By ``kind``:
    ``labelled`` fills ``texts`` and ``labels`` (ids into the task's
    ``ClassLabel``); ``subset`` fills ``indices`` (positions in the clean test
    split the shift was given, increasing; ``ids`` are those rows' ids);
    ``out-of-scope`` fills ``texts``. A set may be empty (e.g. no tail class),
    which the runner skips. Capped sets keep a fixed pseudo-random order, so
    their first ``n`` examples are themselves a deterministic sample.
    """

    shift: str
    task: str
    severity: int
    kind: str
    ids: tuple[str, ...]
    texts: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()
    indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.ids)
        expected = {
            "labelled": (n, n, 0),
            "subset": (0, 0, n),
            "out-of-scope": (n, 0, 0),
        }.get(self.kind)
        if expected is None:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        if (len(self.texts), len(self.labels), len(self.indices)) != expected:
            raise ValueError(
                f"a {self.kind} set of {n} ids needs (texts, labels, indices) of lengths {expected}, got "
                f"{(len(self.texts), len(self.labels), len(self.indices))}"
            )

    def __len__(self) -> int:
        return len(self.ids)


@dataclasses.dataclass(frozen=True)
class TeacherProbs:
    """Differently seeded teachers' probabilities on the clean test examples ``ids``.

    ``ids`` may be any subset of the test split (the runner passes the capped
    test set it scores, so no other test text needs encoding); ``probs`` holds
    one ``(len(ids), n_classes)`` array per teacher, rows in ``ids`` order.
    """

    ids: tuple[str, ...]
    probs: tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True)
class ScoredSplits:
    """The examples a suite uses after its caps: the test examples it scores (ids, texts,
    labels, in the runner's order) and the labels of the training examples its models
    learn from. Shifts draw from and count on these, not on the task's whole splits."""

    test_ids: tuple[str, ...]
    test_texts: tuple[str, ...]
    test_labels: np.ndarray
    train_labels: np.ndarray

    @classmethod
    def whole(cls, task: str) -> "ScoredSplits":
        """The task's uncapped train and test splits."""
        from cud_bench.data.tasks import load_task

        data = load_task(task)
        test = data["test"][:]  # one columnar read
        return cls(
            tuple(test["id"]), tuple(test["text"]), np.asarray(test["label"], dtype=np.int64),
            np.asarray(data["train"]["label"], dtype=np.int64),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ShiftInputs:
    """What the runner passes to :meth:`Shift.build` besides the task and severity.

    ``splits`` (None: the task's whole splits, read when first needed), ``teacher_probs``
    (for shifts that require it) and ``max_examples``: a cap below the shift's own, which
    capped shifts honour by keeping a prefix of their deterministic order (the smoke suite).
    """

    teacher_probs: TeacherProbs | None = None
    splits: ScoredSplits | None = None
    max_examples: int | None = None

    def splits_of(self, task: str) -> ScoredSplits:
        return self.splits if self.splits is not None else ScoredSplits.whole(task)


class Shift(abc.ABC):
    """A registered shift: its frozen :class:`ShiftSpec` and the code that builds its sets.

    ``reference_for`` names a family when the shift is that family's clean reference
    (family ``reference``): the runner scores it whenever it scores a shift of that family.
    """

    spec: ShiftSpec
    reference_for: str | None = None

    def applies_to(self, task: str) -> bool:
        """Whether the shift fits the task (a name or ``name@vN``); nothing is loaded."""
        return EVERY_TASK in self.spec.tasks or task.partition("@v")[0] in self.spec.tasks

    def apply(
        self,
        task: str,
        severity: int,
        *,
        seed: int = 0,
        teacher_probs: TeacherProbs | None = None,
        splits: ScoredSplits | None = None,
        max_examples: int | None = None,
    ) -> ShiftedSet:
        """The evaluation set for ``task`` at ``severity``.

        ``seed`` only matters for random shifts (corruptions); the benchmark
        passes 0 so that every method and training seed meets the same texts.
        ``teacher_probs`` (required when ``"teacher_probs"`` is in
        ``spec.requires``): differently seeded teachers' probabilities on
        some of the task's clean test examples (see :class:`TeacherProbs`).
        ``splits``: the suite's capped splits (default: the task's whole splits);
        ``max_examples``: a further cap (see :class:`ShiftInputs`).
        """
        if not self.applies_to(task):
            raise CudBenchError(
                f"shift {self.spec.id} does not apply to task {task!r}; it applies to: {', '.join(self.spec.tasks)}"
            )
        self.level(severity)  # checks the severity
        if "teacher_probs" in self.spec.requires and (teacher_probs is None or not teacher_probs.probs):
            raise CudBenchError(
                f"shift {self.spec.id} needs the test probabilities of the task's teachers (teacher_probs)"
            )
        if max_examples is not None and max_examples < 1:
            raise CudBenchError(f"max_examples must be positive or None, got {max_examples}")
        inputs = ShiftInputs(teacher_probs, splits, max_examples)
        return self.build(get_task(task).spec.name, severity, seed, inputs)

    @abc.abstractmethod
    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        """Build the set; arguments are already checked (``task`` is the bare task name)."""

    def cap(self, inputs: ShiftInputs) -> int | None:
        """How many examples a capped shift keeps: its own cap, or the caller's smaller one."""
        caps = [c for c in (self.spec.max_examples, inputs.max_examples) if c is not None]
        return min(caps) if caps else None

    def subset(self, task: str, severity: int, test_ids: Sequence[str], indices: np.ndarray) -> ShiftedSet:
        """A ``subset`` set: ``indices`` (increasing) into the test split whose ids are ``test_ids``."""
        test_ids = list(test_ids)  # a datasets Column is slow to index row by row
        return ShiftedSet(
            shift=self.spec.id,
            task=get_task(task).spec.id,
            severity=severity,
            kind="subset",
            ids=tuple(test_ids[i] for i in indices),
            indices=tuple(int(i) for i in indices),
        )

    def level(self, severity: int) -> float | None:
        """The parameter ``severity`` sets (see ``spec.levels``); None for a shift without levels."""
        if severity not in self.spec.severities:
            raise CudBenchError(
                f"shift {self.spec.id} has no severity {severity!r}; its severities are {self.spec.severities}"
            )
        return self.spec.levels[severity - 1] if self.spec.levels else None


shifts: Registry[Shift] = Registry("shift", entry_point_group="cud_bench.shifts", discover=("shifts.defs",))


def register_shift(shift: Shift) -> Shift:
    """Register ``shift`` under its spec's name; returns it (one call per definition module)."""
    shifts.register(shift.spec.name, shift)
    return shift


def get_shift(name: str) -> Shift:
    """The shift named ``name`` or ``name@vN`` (the version must be the registered one)."""
    return shifts.get_versioned(name)
