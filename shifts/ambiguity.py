"""Ambiguous subsets of the clean test set, defined by people or by models (kind ``subset``).

Human-defined (:class:`LowAgreement`): the tweets whose crowd agreement
(column ``confidence``) is below a threshold; tweets without an agreement
score are in no subset.

Model-defined (:class:`TeacherDisagreement`): the test examples on which
differently seeded teachers of the same recipe do not all predict the same
class. It is computed from the teachers' predicted classes alone; no label of
any split is read, and the teachers were fitted on training data only, so the
subset leaks nothing about test labels into training or selection. The runner
passes an ensemble *disjoint from every teacher a method distils*: CE teachers of
the suite's ``ensemble_seeds``, which a suite may not share with its ``seeds``
(:class:`~cud_bench.suites.SuiteSpec` refuses it). Version 1 used the suite's own
seeds, so the examples on which kd, ts and cud-wclip's own teacher wavered were
picked out by that very teacher: a subset biased towards (or against) them.

Both subsets are positions in the test split the shift is given (the suite's
scored split; the whole test split by default).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cud_bench.data.tasks import get_task, load_task
from cud_bench.errors import CudBenchError
from shifts.base import EVERY_TASK, Shift, ShiftedSet, ShiftInputs, ShiftSpec


class LowAgreement(Shift):
    """Test examples whose ``confidence`` (crowd agreement in [0, 1]) is below the severity's level."""

    def __init__(
        self, name: str, *, tasks: Sequence[str], levels: Sequence[float], description: str, version: int = 1
    ) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="ambiguous",
            kind="subset",
            tasks=tuple(tasks),
            severities=tuple(range(1, len(levels) + 1)),
            levels=tuple(levels),
            max_examples=None,
            source="the task's crowd agreement column `confidence`",
            level_meaning="crowd agreement below which a test example is ambiguous",
            description=description,
        )

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        test = load_task(task)["test"]
        if "confidence" not in test.column_names:
            raise CudBenchError(f"shift {self.spec.id} needs a `confidence` column, which task {task!r} lacks")
        by_id = dict(zip(test["id"], np.array(test["confidence"], dtype=np.float64)))  # None -> nan: in no subset
        test_ids = inputs.splits_of(task).test_ids
        agreement = np.array([by_id[i] for i in test_ids])
        indices = np.flatnonzero(agreement < self.level(severity))
        return self.subset(task, severity, test_ids, indices)


class TeacherDisagreement(Shift):
    """Test examples on which the argmax of the given teachers' probabilities is not unanimous."""

    def __init__(self, name: str, *, description: str, version: int = 2) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="ambiguous",
            kind="subset",
            tasks=(EVERY_TASK,),
            severities=(1,),
            levels=(),
            max_examples=None,
            source="the runner: test probabilities of CE teachers of the suite's ensemble seeds (disjoint from its "
            "seeds, so from every teacher a method distils) on the scored test examples",
            requires=("teacher_probs",),
            params=(("ensemble", "ce teachers of the suite's ensemble_seeds, disjoint from its seeds"),),
            description=description,
        )

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        teacher_probs = inputs.teacher_probs
        assert teacher_probs is not None  # apply() checked it
        test_ids = list(inputs.splits_of(task).test_ids)
        position = {id_: i for i, id_ in enumerate(test_ids)}
        unknown = [id_ for id_ in teacher_probs.ids if id_ not in position]
        if unknown:
            raise CudBenchError(f"shift {self.spec.id}: ids not in task {task!r}'s scored test split: {unknown[:3]}")
        shape = (len(teacher_probs.ids), get_task(task).spec.num_classes)
        shapes = {np.shape(p) for p in teacher_probs.probs}
        if len(teacher_probs.probs) < 2 or shapes != {shape}:
            raise CudBenchError(
                f"shift {self.spec.id} needs at least 2 teachers' test probabilities of shape {shape} "
                f"for task {task!r}; got {len(teacher_probs.probs)} of shape(s) {sorted(shapes)}"
            )
        votes = np.stack([np.argmax(p, axis=1) for p in teacher_probs.probs])
        split = np.flatnonzero((votes != votes[0]).any(axis=0))
        indices = np.array(sorted(position[teacher_probs.ids[j]] for j in split), dtype=np.int64)
        return self.subset(task, severity, test_ids, indices)
