"""Neighbouring-character swap: two adjacent characters of a word trade places."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-swap",
        augmenter="nlpaug.augmenter.char:RandomCharAug",
        rate_option="aug_word_p",
        options={**CHAR_OPTIONS, "action": "swap", "swap_mode": "adjacent"},
        level_meaning=CHAR_LEVELS,
        description="Neighbouring-character swap: a character trades places with its left or right "
        "neighbour in the same word (nlpaug's RandomCharAug, swap_mode='adjacent').",
    )
)
