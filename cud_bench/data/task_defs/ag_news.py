"""ag-news: AG's news topic classification, 4 classes."""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import PARQUET_REVISION, HubSource
from cud_bench.data.task_defs._hub import hub_frames
from cud_bench.data.tasks import register_task

SOURCE = HubSource("fancyzhx/ag_news", revision=PARQUET_REVISION, data_dir="default")
TOPICS = ("World", "Sports", "Business", "Sci/Tech")  # the hub's ClassLabel order


@register_task(
    SOURCE,
    name="ag-news",
    version=1,
    label_names=TOPICS,
    val_fraction=0.1,
    notes="Hub task (120,000 train / 7,600 test upstream); validation 10% of train.",
)
def read() -> dict[str, pd.DataFrame]:
    return hub_frames(SOURCE, "text", "label", TOPICS)
