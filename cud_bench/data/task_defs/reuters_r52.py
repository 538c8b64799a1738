"""reuters-r52: Reuters-21578 newswire, all 52 single-label topics (a long tail)."""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs._orange import ORANGE_TEXT, read_corpus
from cud_bench.data.tasks import register_task

LABELS = (
    "acq", "alum", "bop", "carcass", "cocoa", "coffee", "copper", "cotton", "cpi", "cpu", "crude", "dlr",
    "earn", "fuel", "gas", "gnp", "gold", "grain", "heat", "housing", "income", "instal-debt", "interest",
    "ipi", "iron-steel", "jet", "jobs", "lead", "lei", "livestock", "lumber", "meal-feed", "money-fx",
    "money-supply", "nat-gas", "nickel", "orange", "pet-chem", "platinum", "potato", "reserves", "retail",
    "rubber", "ship", "strategic-metal", "sugar", "tea", "tin", "trade", "veg-oil", "wpi", "zinc",
)  # fmt: skip


@register_task(
    ORANGE_TEXT,
    name="reuters-r52",
    version=1,
    label_names=LABELS,
    val_fraction=0.1,
    notes="ModApte train/test kept; validation 10% of train per class (classes under 5 training "
    "documents give none); 17 classes have fewer than 10 training documents.",
)
def read() -> dict[str, pd.DataFrame]:
    return read_corpus("reuters-r52")
