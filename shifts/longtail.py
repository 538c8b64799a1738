"""Class-frequency buckets: the clean test set split by how often each class occurs in training.

Severity 1, 2, 3 are the head, medium and tail buckets: test examples whose
class has at least :data:`HEAD` training examples, at least :data:`TAIL` but
fewer than :data:`HEAD`, and fewer than :data:`TAIL` (the many-, medium- and
few-shot split of Liu et al. 2019, "Large-scale long-tailed recognition in an
open world"). Counts are taken on the training labels the models actually learn
from (the suite's capped train split, :class:`~shifts.base.ScoredSplits`; version 1
counted the whole train split, so a "tail" class could have 6 or 0 training examples
in a capped suite); a bucket with no class is an empty set. On a balanced task every
example is in the head (the runner then skips the bucket: it equals the clean set);
the buckets matter on reuters-r52 and the long-tailed training variants
(``20newsgroups-lt10``, ``20newsgroups-lt100``), whose test sets are balanced.
"""

from __future__ import annotations

import numpy as np

from cud_bench.data.tasks import get_task
from shifts.base import EVERY_TASK, Shift, ShiftedSet, ShiftInputs, ShiftSpec

HEAD = 100
TAIL = 20
BUCKETS = ("head", "medium", "tail")
LOWER_BOUNDS = (HEAD, TAIL, 0)  # fewest training examples of a class in each bucket


class FrequencyBuckets(Shift):
    """The test examples of the classes in one frequency bucket (kind ``subset``)."""

    def __init__(self, name: str, *, description: str, version: int = 2) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="long-tail",
            kind="subset",
            tasks=(EVERY_TASK,),
            severities=(1, 2, 3),
            levels=LOWER_BOUNDS,
            max_examples=None,
            source="the suite's scored test split, bucketed by the class counts of its capped train split",
            params=(("buckets", BUCKETS), ("head_min", HEAD), ("tail_below", TAIL)),
            level_meaning="fewest training examples of a class in the bucket (head, medium, tail)",
            description=description,
        )

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        splits = inputs.splits_of(task)
        counts = np.bincount(splits.train_labels, minlength=get_task(task).spec.num_classes)
        upper = np.inf if severity == 1 else LOWER_BOUNDS[severity - 2]
        in_bucket = (counts >= LOWER_BOUNDS[severity - 1]) & (counts < upper)
        return self.subset(task, severity, splits.test_ids, np.flatnonzero(in_bucket[splits.test_labels]))
