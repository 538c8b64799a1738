"""Domain transfer: a model trained on one task meets labelled texts from another domain.

The target texts come from every split of a *source task* (no model trained
on the training task has seen any of them), restricted to the source labels
that ``label_map`` names and relabelled into the training task's label space
by name, so the mapping is explicit and checked. Texts that also occur in the
training task are dropped, so the two sides never share a text. At most
:data:`CAP` examples are kept, in :func:`shifts.selection.hash_order`.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from cud_bench.data.task_defs._tweet_collections import RULES, collection_of
from cud_bench.data.tasks import get_task
from cud_bench.errors import CudBenchError
from shifts.base import Shift, ShiftedSet, ShiftInputs, ShiftSpec
from shifts.selection import capped, task_rows, unseen_by

CAP = 500


class DomainTransfer(Shift):
    """``task``'s model scored on ``source_task``'s texts whose label ``label_map`` maps to one of ``task``'s."""

    def __init__(
        self,
        name: str,
        *,
        task: str,
        source_task: str,
        label_map: Mapping[str, str],
        description: str,
        params: tuple[tuple[str, Any], ...] = (),
        version: int = 1,
    ) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="domain",
            kind="labelled",
            tasks=(task,),
            severities=(1,),
            levels=(),
            max_examples=CAP,
            source=f"task:{source_task} (every split)",
            params=(("label_map", tuple(sorted(label_map.items()))), *params),
            description=description,
        )
        self.source_task = source_task
        self.label_map = dict(label_map)

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        task_spec = get_task(task).spec
        unknown = sorted(set(self.label_map.values()) - set(task_spec.label_names))
        if unknown:
            raise CudBenchError(f"shift {self.spec.id}: label(s) {unknown} are not labels of task {task!r}")
        source_names = get_task(self.source_task).spec.label_names
        rows = task_rows(self.source_task)
        rows = rows.assign(source_label=[source_names[i] for i in rows["label"]])
        rows = capped(unseen_by(self.target_rows(rows[rows["source_label"].isin(self.label_map)]), task), self.cap(inputs))
        codes = {name: i for i, name in enumerate(task_spec.label_names)}
        return ShiftedSet(
            shift=self.spec.id,
            task=task_spec.id,
            severity=severity,
            kind="labelled",
            ids=tuple(rows["id"]),
            texts=tuple(rows["text"]),
            labels=tuple(codes[self.label_map[name]] for name in rows["source_label"]),
        )

    def target_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """A further restriction of the source rows (none here; see :class:`TweetCollectionTransfer`)."""
        return rows


class TweetCollectionTransfer(DomainTransfer):
    """From the airline tweets to another collection of tweets-sentiment, by the collections' keyword rules."""

    def __init__(self, name: str, *, collection: str, description: str, version: int = 1) -> None:
        if collection not in RULES:
            raise ValueError(f"unknown tweet collection {collection!r}; known: {sorted(RULES)}")
        names = ("negative", "neutral", "positive")
        super().__init__(
            name,
            task="tweets-airline",
            source_task="tweets-sentiment",
            label_map={n: n for n in names},
            description=description,
            params=(("collection", collection), ("rules", tuple(RULES.items()))),
            version=version,
        )
        self.collection = collection

    def target_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        return rows[rows["raw_text"].map(collection_of) == self.collection]
