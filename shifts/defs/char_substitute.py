"""Random character substitution: a character is replaced by a random character."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-substitute",
        augmenter="nlpaug.augmenter.char:RandomCharAug",
        rate_option="aug_word_p",
        options={**CHAR_OPTIONS, "action": "substitute"},
        level_meaning=CHAR_LEVELS,
        description="Random character substitution: a character is replaced by a random character"
        " (nlpaug's RandomCharAug; characters drawn from letters, digits and !@#$%^&*()_+).",
    )
)
