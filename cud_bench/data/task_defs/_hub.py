"""Reading a cached hub data set into the frames a task's ``read`` returns."""

from __future__ import annotations

from typing import Sequence

import datasets
import pandas as pd

from cud_bench.data.sources import HubSource
from cud_bench.errors import DataError


def hub_frames(
    source: HubSource, text_column: str, label_column: str, label_names: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Every split of ``source`` as a frame with ``text`` and ``label`` (a label name).

    Integer labels are decoded with ``label_names``, the hub's own order, pinned
    in the task module. Hub files carry a ``ClassLabel`` whose names must equal
    them (so a reordered upstream label set fails loudly); mirror files carry
    bare integers in that order.
    """
    frames = {}
    for split, data in source.load().items():
        feature = data.features[label_column]
        if isinstance(feature, datasets.ClassLabel) and list(feature.names) != list(label_names):
            raise DataError(
                f"{source.describe()}: the names of {label_column!r} differ from the pinned ones; "
                "the data set changed upstream"
            )
        frame = data.select_columns([text_column, label_column]).to_pandas()
        frames[split] = pd.DataFrame(
            {"text": frame[text_column], "label": [label_names[i] for i in frame[label_column]]}
        )
    return frames
