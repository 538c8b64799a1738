"""trec: TREC question classification, the 6 coarse answer types (``coarse_label``).

The hub repository ships only a loading script, so its Parquet export is
read. Test (500, TREC 10) kept; validation carved from train.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import PARQUET_REVISION, HubSource
from cud_bench.data.task_defs._hub import hub_frames
from cud_bench.data.tasks import register_task

SOURCE = HubSource("CogComp/trec", revision=PARQUET_REVISION, data_dir="default")
COARSE = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")  # the hub's ClassLabel order


@register_task(
    SOURCE,
    name="trec",
    version=1,
    label_names=COARSE,
    val_fraction=0.1,
    notes="Hub task (5,452 train / 500 test upstream); validation 10% of train.",
)
def read() -> dict[str, pd.DataFrame]:
    return hub_frames(SOURCE, "text", "coarse_label", COARSE)
