"""Random word deletion: words are removed."""

from shifts.base import register_shift
from shifts.corruption import WORD_OPTIONS, Corruption

register_shift(
    Corruption(
        "word-delete",
        augmenter="nlpaug.augmenter.word:RandomWordAug",
        rate_option="aug_p",
        options={**WORD_OPTIONS, "action": "delete"},
        level_meaning="fraction of words deleted",
        description="Random word deletion: words are removed (nlpaug's RandomWordAug).",
    )
)
