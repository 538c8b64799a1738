"""WordNet 3.0, read offline by NLTK's reader from Debian's ``wordnet-base`` and ``wordnet-sense-index``.

Why not ``nltk.download("wordnet")``: nothing may reach a data hub at run time.
Debian ships the WordNet 3.0 database files in ``/usr/share/wordnet`` but not
the ``lexnames`` file NLTK's reader opens first; it is written here from the
lexnames(5WN) manual page. The reader's folder lives in the cache
(``<cache>/nltk_data/corpora/wordnet``) and holds copies of the Debian files
(about 36 MB): NLTK only opens files that resolve inside a folder on its data
path, so links to ``/usr/share/wordnet`` would be refused.
"""

from __future__ import annotations

import functools
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from cud_bench.io import atomic_dir
from cud_bench.errors import DataError
from cud_bench.io import cache_dir

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

DEBIAN_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
SOURCE = "debian:" + ",".join(DEBIAN_PACKAGES) + " (WordNet 3.0)"
# The database files NLTK's reader opens (its _FILES), all shipped by the Debian packages.
DATABASE_FILES = (
    "cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)  # fmt: skip
# lexnames(5WN): the 45 lexicographer files, in file-number order (00..44).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}  # lexnames(5WN): the third field


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, 45 lines."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def wordnet_dir() -> Path:
    """The reader's folder in the cache, created (atomically) on first use."""
    target = nltk_data_dir() / "corpora" / "wordnet"
    missing = [name for name in DATABASE_FILES if not (DEBIAN_DIR / name).is_file()]
    if missing:
        raise DataError(
            f"WordNet is not installed: {DEBIAN_DIR} lacks {', '.join(missing)}. Install the Debian packages with "
            f"`apt-get install --no-install-recommends {' '.join(DEBIAN_PACKAGES)}`"
        )
    if not (target / "lexnames").is_file():
        with atomic_dir(target) as tmp:
            for name in DATABASE_FILES:
                shutil.copyfile(DEBIAN_DIR / name, tmp / name)
            (tmp / "lexnames").write_text(lexnames_text())
    return target


def nltk_data_dir() -> Path:
    return cache_dir() / "nltk_data"


@functools.lru_cache(maxsize=1)
def wordnet() -> WordNetCorpusReader:
    """NLTK's WordNet reader on :func:`wordnet_dir` (English only: no multilingual data is needed).

    The cache's ``nltk_data`` folder is appended to ``nltk.data.path``, which
    NLTK requires of every folder its readers open. (NLTK is imported here:
    listing shifts should not pay for it.)
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = wordnet_dir()
    if str(nltk_data_dir()) not in nltk.data.path:
        nltk.data.path.append(str(nltk_data_dir()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return WordNetCorpusReader(str(root), None)


@functools.cache
def synonyms(word: str) -> tuple[str, ...]:
    """Lemma names sharing a synset with ``word`` (any part of speech), in WordNet's order.

    ``word`` is looked up lower-cased (NLTK's morphy finds the base form);
    multi-word lemmas keep their ``_``; ``word`` itself is left out.
    """
    word = word.lower()
    names = (lemma.name() for synset in wordnet().synsets(word) for lemma in synset.lemmas())
    return tuple(dict.fromkeys(n for n in names if n.lower() != word))
