"""Random word swap: a word trades places with its left or right neighbour."""

from shifts.base import register_shift
from shifts.corruption import WORD_OPTIONS, Corruption

register_shift(
    Corruption(
        "word-swap",
        augmenter="nlpaug.augmenter.word:RandomWordAug",
        rate_option="aug_p",
        options={**WORD_OPTIONS, "action": "swap"},
        level_meaning="fraction of words swapped with a neighbour",
        description="Random word swap: a word trades places with its left or right neighbour (nlpaug's RandomWordAug).",
    )
)
