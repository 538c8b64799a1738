"""Random character insertion: a random character is inserted into a word."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-insert",
        augmenter="nlpaug.augmenter.char:RandomCharAug",
        rate_option="aug_word_p",
        options={**CHAR_OPTIONS, "action": "insert"},
        level_meaning=CHAR_LEVELS,
        description="Random character insertion: a random character is inserted into a word"
        " (nlpaug's RandomCharAug; characters drawn from letters, digits and !@#$%^&*()_+).",
    )
)
