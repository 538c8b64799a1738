"""20newsgroups-15groups: 20newsgroups without five groups, which come back as out-of-scope inputs.

The held-out groups (one per super-category, see ``_newsgroups``) are left out
of every split; the shift ``20newsgroups-heldout-groups`` brings their posts back for
out-of-scope detection. Built from the 20newsgroups reader: bydate split kept.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs import twenty_newsgroups
from cud_bench.data.task_defs._newsgroups import HELD_OUT_GROUPS
from cud_bench.data.task_defs._orange import ORANGE_TEXT
from cud_bench.data.tasks import register_task


@register_task(
    ORANGE_TEXT,
    name="20newsgroups-15groups",
    version=1,
    label_names=tuple(g for g in twenty_newsgroups.GROUPS if g not in HELD_OUT_GROUPS),
    val_fraction=0.1,
    notes=f"20newsgroups without {', '.join(HELD_OUT_GROUPS)}; bydate train/test kept.",
)
def read() -> dict[str, pd.DataFrame]:
    return {split: frame[~frame["label"].isin(HELD_OUT_GROUPS)] for split, frame in twenty_newsgroups.read().items()}
