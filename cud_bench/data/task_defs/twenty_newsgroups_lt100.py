"""20newsgroups-lt100: 20newsgroups with its training classes cut to a long tail, imbalance ratio 100.

The exponential profile of ``_longtail`` (alt.atheism is the head, talk.religion.misc
the tail); validation is carved from the long-tailed pool, so it follows the
same profile; the bydate test split is kept as it is (balanced).
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs import twenty_newsgroups
from cud_bench.data.task_defs._longtail import long_tail
from cud_bench.data.task_defs._orange import ORANGE_TEXT
from cud_bench.data.tasks import register_task

RATIO = 100


@register_task(
    ORANGE_TEXT,
    name="20newsgroups-lt100",
    version=1,
    label_names=twenty_newsgroups.GROUPS,
    val_fraction=0.1,
    notes="Training classes cut to an exponential long tail (imbalance ratio 100); bydate test kept, balanced.",
)
def read() -> dict[str, pd.DataFrame]:
    splits = twenty_newsgroups.read()
    train, test = splits["train"], splits["test"]
    return {"train": long_tail(train, test, twenty_newsgroups.GROUPS, RATIO), "test": test}
