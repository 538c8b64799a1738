"""reuters-r8: Reuters-21578 newswire, the 8 most frequent single-label topics (very imbalanced)."""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs._orange import ORANGE_TEXT, read_corpus
from cud_bench.data.tasks import register_task


@register_task(
    ORANGE_TEXT,
    name="reuters-r8",
    version=1,
    label_names=("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"),
    val_fraction=0.1,
    notes="ModApte train/test kept; validation 10% of train; earn has 2,840 training documents, grain 41.",
)
def read() -> dict[str, pd.DataFrame]:
    return read_corpus("reuters-r8")
