"""Random character deletion: a character is removed from a word."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-delete",
        augmenter="nlpaug.augmenter.char:RandomCharAug",
        rate_option="aug_word_p",
        options={**CHAR_OPTIONS, "action": "delete"},
        level_meaning=CHAR_LEVELS,
        description="Random character deletion: a character is removed from a word" " (nlpaug's RandomCharAug).",
    )
)
