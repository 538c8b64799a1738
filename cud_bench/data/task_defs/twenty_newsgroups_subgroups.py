"""20newsgroups-subgroups: the super-category of a post, learned from some groups of each (see ``_newsgroups``).

Trained on the source groups (11 of them), labelled by super-category; the
shift ``20newsgroups-subgroups-to-target`` tests it on the other 8 groups.
Built from the 20newsgroups reader: the bydate train/test split is kept.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs import twenty_newsgroups
from cud_bench.data.task_defs._newsgroups import SOURCE_GROUPS, SUPER_CATEGORIES, SUPER_OF
from cud_bench.data.task_defs._orange import ORANGE_TEXT
from cud_bench.data.tasks import register_task


@register_task(
    ORANGE_TEXT,
    name="20newsgroups-subgroups",
    version=1,
    label_names=tuple(SUPER_CATEGORIES),
    val_fraction=0.1,
    notes="Super-category (comp, rec, sci, politics, religion) from 11 source groups; bydate train/test kept.",
)
def read() -> dict[str, pd.DataFrame]:
    return {
        split: frame[frame["label"].isin(SOURCE_GROUPS)].assign(label=lambda f: f["label"].map(SUPER_OF))
        for split, frame in twenty_newsgroups.read().items()
    }
