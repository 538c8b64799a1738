"""GloVe-neighbour swap: a content word replaced by one of its nearest words in GloVe space."""

from shifts import glove
from shifts.base import register_shift
from shifts.corruption import NLPAUG, WORD_OPTIONS, Corruption

register_shift(
    Corruption(
        "word-glove",
        augmenter="shifts.augmenters:GloveNeighbourAug",
        rate_option="aug_p",
        options=WORD_OPTIONS,
        source=f"{NLPAUG} + {glove.GLOVE.describe()} "
        f"({glove.NEIGHBOURS} neighbours among the top {glove.VOCAB_SIZE} words)",
        level_meaning="fraction of words replaced (drawn among non-stop-words in the GloVe vocabulary)",
        description=f"GloVe-neighbour swap: a word that is not a stop word becomes one of its {glove.NEIGHBOURS} "
        f"nearest neighbours by cosine among the {glove.VOCAB_SIZE:,} most frequent alphabetic words of "
        "GloVe 6B 50-d (nlpaug's WordEmbsAug; neighbours can be antonyms, as in embedding attacks).",
    )
)
