"""Keyboard typos: a letter replaced by a neighbouring key on a QWERTY keyboard."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-keyboard",
        augmenter="nlpaug.augmenter.char:KeyboardAug",
        rate_option="aug_word_p",
        options={**CHAR_OPTIONS, "include_special_char": False, "include_numeric": False, "lang": "en"},
        level_meaning=CHAR_LEVELS,
        description="Keyboard typos: a letter becomes one of its neighbours on the QWERTY keyboard map that "
        "nlpaug ships (letters only, no digits or symbols).",
    )
)
