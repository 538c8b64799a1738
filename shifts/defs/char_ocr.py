"""OCR errors: a character replaced by one an OCR engine confuses it with (o/0, l/1, ...)."""

from shifts.base import register_shift
from shifts.corruption import CHAR_LEVELS, CHAR_OPTIONS, Corruption

register_shift(
    Corruption(
        "char-ocr",
        augmenter="nlpaug.augmenter.char:OcrAug",
        rate_option="aug_word_p",
        options=CHAR_OPTIONS,
        level_meaning=CHAR_LEVELS,
        description="OCR confusions: a character becomes one that OCR engines mistake it for, from the "
        "confusion table nlpaug ships (e.g. o->0, l->1, s->5); words without such a character are left alone.",
    )
)
