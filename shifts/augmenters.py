"""nlpaug's word-swap augmenters, wired to offline resources.

nlpaug's ``SynonymAug`` reads WordNet through ``nltk.corpus.wordnet`` and tags
parts of speech with NLTK's tagger, downloading both when missing; its
``WordEmbsAug`` loads embeddings from a text file. These subclasses keep
nlpaug's selection and substitution logic and swap in models that read only
local data: :mod:`shifts.wordnet` (no tagger exists offline, so every sense of
a word is a candidate, as in TextAttack's WordNet swap) and
:mod:`shifts.glove`. Both leave English stop words alone (scikit-learn's
list) and only pick words that have a candidate, so the swap rate is the rate
among content words that can be swapped. Tokens are whitespace-separated;
punctuation around a word stays where it was and its capitalisation is kept.

Imported only when a word-swap corruption is first built (nlpaug imports torch).
"""

from __future__ import annotations

import re
from typing import Any

import nlpaug.augmenter.word as naw
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from shifts.glove import neighbour_table
from shifts.wordnet import synonyms

_AFFIXES = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def split_token(token: str) -> tuple[str, str, str]:
    """(leading punctuation, word, trailing punctuation); ``'"Great!'`` -> ``('"', 'Great', '!')``."""
    prefix, word, suffix = _AFFIXES.match(token).groups()
    return prefix, word, suffix


def respell(token: str, word: str) -> str:
    """``word`` in ``token``'s place: same surrounding punctuation, same capitalisation."""
    prefix, core, suffix = split_token(token)
    if len(core) > 1 and core.isupper():
        word = word.upper()
    elif core[:1].isupper():
        word = word[:1].upper() + word[1:]
    return prefix + word + suffix


def swappable(token: str) -> bool:
    """A token whose word is alphabetic and not an English stop word."""
    word = split_token(token)[1]
    return word.isalpha() and word.lower() not in ENGLISH_STOP_WORDS


class _WordNetModel:
    """nlpaug's word-dictionary interface (``pos_tag``, ``predict``) over :func:`shifts.wordnet.synonyms`."""

    @staticmethod
    def pos_tag(tokens: list[str]) -> list[tuple[str, None]]:
        return [(token, None) for token in tokens]

    @staticmethod
    def predict(token: str, pos: Any = None) -> list[str]:
        return [respell(token, name.replace("_", " ")) for name in synonyms(split_token(token)[1])]


class WordNetSynonymAug(naw.SynonymAug):
    """nlpaug's ``SynonymAug`` on the offline WordNet, every sense a candidate."""

    def __init__(self, **options: Any) -> None:
        super().__init__(aug_src="wordnet", **options)

    def get_model(self, *args: Any) -> _WordNetModel:  # replaces the downloading WordNet model
        return _WordNetModel()

    def skip_aug(self, token_idxes: list[int], tokens: list[tuple[str, None]]) -> list[int]:
        return [i for i in token_idxes if swappable(tokens[i][0]) and self.model.predict(tokens[i][0])]


class _GloveModel:
    """nlpaug's word-embedding interface (``predict``) over :func:`shifts.glove.neighbour_table`."""

    def __init__(self) -> None:
        self.table = neighbour_table()

    def predict(self, token: str, n: int = 1) -> list[str]:
        word = split_token(token)[1].lower()
        return [respell(token, w) for w in self.table[word]] if word in self.table else []


class GloveNeighbourAug(naw.WordEmbsAug):
    """nlpaug's ``WordEmbsAug`` (substitute) with GloVe neighbours from the pinned wheel."""

    def __init__(self, **options: Any) -> None:
        super().__init__(model_type="glove", model=_GloveModel(), **options)

    def skip_aug(self, token_idxes: list[int], tokens: list[str]) -> list[int]:
        return [i for i in token_idxes if swappable(tokens[i]) and self.model.predict(tokens[i])]
