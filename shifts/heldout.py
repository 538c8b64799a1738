"""Held-out classes: inputs from classes the model was never trained on, for out-of-scope detection.

The set holds texts only (kind ``out-of-scope``); the runner scores them
against the task's clean test split (in scope): AUROC of max-probability and
of entropy as out-of-scope scores, and the model's confidence on them. Texts
that also occur in the training task are dropped (a cross-posted message is in
scope), and at most :data:`CAP` are kept, in :func:`shifts.selection.hash_order`.
"""

from __future__ import annotations

from typing import Sequence

from cud_bench.data.tasks import SPLITS, get_task
from cud_bench.errors import CudBenchError
from shifts.base import Shift, ShiftedSet, ShiftInputs, ShiftSpec
from shifts.selection import capped, task_rows, unseen_by

CAP = 500


class HeldOutClasses(Shift):
    """Rows of ``source_task``'s ``splits`` (only those labelled ``classes``, if given), out of ``task``'s scope."""

    def __init__(
        self,
        name: str,
        *,
        task: str,
        source_task: str,
        description: str,
        splits: Sequence[str] = SPLITS,
        classes: Sequence[str] | None = None,
        version: int = 1,
    ) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="held-out",
            kind="out-of-scope",
            tasks=(task,),
            severities=(1,),
            levels=(),
            max_examples=CAP,
            source=f"task:{source_task} ({', '.join(splits)})",
            params=(("classes", tuple(classes) if classes is not None else None),),
            description=description,
        )
        self.source_task = source_task
        self.splits = tuple(splits)
        self.classes = classes

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        rows = task_rows(self.source_task, self.splits)
        if self.classes is not None:
            names = get_task(self.source_task).spec.label_names
            unknown = sorted(set(self.classes) - set(names))
            if unknown:
                raise CudBenchError(f"shift {self.spec.id}: {unknown} are not classes of task {self.source_task!r}")
            rows = rows[rows["label"].isin([names.index(c) for c in self.classes])]
        rows = capped(unseen_by(rows, task), self.cap(inputs))
        return ShiftedSet(
            shift=self.spec.id,
            task=get_task(task).spec.id,
            severity=severity,
            kind="out-of-scope",
            ids=tuple(rows["id"]),
            texts=tuple(rows["text"]),
        )
