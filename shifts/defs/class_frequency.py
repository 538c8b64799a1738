"""Long tail: the clean test set split into head, medium and tail classes by training frequency."""

from shifts.base import register_shift
from shifts.longtail import HEAD, TAIL, FrequencyBuckets

register_shift(
    FrequencyBuckets(
        "class-frequency",
        description=f"Metrics per class-frequency bucket: severity 1 = head (classes with >= {HEAD} examples in "
        f"the suite's capped training split, the one its models learn from), 2 = medium ({TAIL}-{HEAD - 1}), "
        f"3 = tail (< {TAIL}). Meant for every task, chiefly "
        "reuters-r52 and the long-tailed training variants 20newsgroups-lt10 / -lt100 (exponential profile, "
        "balanced test set).",
    )
)
