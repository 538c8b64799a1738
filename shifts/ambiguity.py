"""Ambiguous subsets of the clean test set, defined by people or by models (kind ``subset``).

Human-defined (:class:`LowAgreement`): the tweets whose crowd agreement
(column ``confidence``) is below a threshold; tweets without an agreement
score are in no subset.

Model-defined (:class:`TeacherDisagreement`): the test examples on which
differently seeded teachers of the same recipe do not all predict the same
class. It is computed from the teachers' predicted classes alone; no label of
any split is read, and the teachers were fitted on training data only, so the
subset leaks nothing about test labels into training or selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cud_bench.data.tasks import get_task, load_task
from cud_bench.errors import CudBenchError
from shifts.base import EVERY_TASK, Shift, ShiftedSet, ShiftSpec, TeacherProbs


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

    def build(self, task: str, severity: int, seed: int, teacher_probs: Any) -> ShiftedSet:
        test = load_task(task)["test"]
        if "confidence" not in test.column_names:
            raise CudBenchError(f"shift {self.spec.id} needs a `confidence` column, which task {task!r} lacks")
        agreement = np.array(test["confidence"], dtype=np.float64)  # None -> nan: in no subset
        indices = np.flatnonzero(agreement < self.level(severity))
        return self.subset(task, severity, test["id"], indices)


class TeacherDisagreement(Shift):
    """Test examples on which the argmax of the given teachers' probabilities is not unanimous."""

    def __init__(self, name: str, *, description: str, version: int = 1) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="ambiguous",
            kind="subset",
            tasks=(EVERY_TASK,),
            severities=(1,),
            levels=(),
            max_examples=None,
            source="the runner: test probabilities of the task's differently seeded teachers on the scored test examples",
            requires=("teacher_probs",),
            description=description,
        )

    def build(self, task: str, severity: int, seed: int, teacher_probs: TeacherProbs) -> ShiftedSet:
        test_ids = list(load_task(task)["test"]["id"])
        position = {id_: i for i, id_ in enumerate(test_ids)}
        unknown = [id_ for id_ in teacher_probs.ids if id_ not in position]
        if unknown:
            raise CudBenchError(f"shift {self.spec.id}: ids not in task {task!r}'s test split: {unknown[:3]}")
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
