"""The clean originals of the corrupted texts, scored beside them (paired corrupted - clean)."""

from shifts.base import register_shift
from shifts.corruption import SIZE, CleanOriginals

register_shift(
    CleanOriginals(
        "corruption-clean",
        description=f"The clean versions of the (up to {SIZE}) scored test texts that every corruption corrupts, "
        "in the same order: the reference for paired corrupted-minus-clean differences. Scored whenever a "
        "corruption is.",
    )
)
