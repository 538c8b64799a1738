"""20newsgroups: Usenet posts from 20 groups, the "bydate" split; the group name is the label."""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs._orange import ORANGE_TEXT, read_corpus
from cud_bench.data.tasks import register_task

GROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
    "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc",
    "talk.religion.misc",
)  # fmt: skip


@register_task(
    ORANGE_TEXT,
    name="20newsgroups",
    version=1,
    label_names=GROUPS,
    val_fraction=0.1,
    notes="bydate train/test kept; validation 10% of train; lowercased, letters only (by the source).",
)
def read() -> dict[str, pd.DataFrame]:
    return read_corpus("20newsgroups")
