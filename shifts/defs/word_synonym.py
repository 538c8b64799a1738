"""WordNet synonym swap: a content word replaced by a lemma from one of its WordNet synsets."""

from shifts import wordnet
from shifts.base import register_shift
from shifts.corruption import NLPAUG, WORD_OPTIONS, Corruption

register_shift(
    Corruption(
        "word-synonym",
        augmenter="shifts.augmenters:WordNetSynonymAug",
        rate_option="aug_p",
        options=WORD_OPTIONS,
        source=f"{NLPAUG} + {wordnet.SOURCE}",
        level_meaning="fraction of words replaced (drawn among non-stop-words that have a synonym)",
        description="WordNet synonym swap: a word that is not a stop word becomes a lemma sharing one of its "
        "WordNet 3.0 synsets, any part of speech (no tagger is available offline); nlpaug's SynonymAug "
        "on WordNet read from Debian's packages.",
    )
)
