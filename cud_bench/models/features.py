"""Sentence features from frozen encoders, cached on disk so that no text is encoded twice.

:func:`encode` returns one mean-pooled vector per text, in input order. It is
fast for two reasons. Texts are sorted by token length and padded per batch, so
a batch of short texts costs what short texts cost (on rt-polarity, about 3x
faster than padding every text to 128 tokens: ``benchmarks/bench_features.py``).
And every vector is stored under (encoder spec, ``max_length``, sha256 of the
text): a text met again, in another call, task, shift or process, is read back
instead of encoded.

Determinism: padding is masked out of attention and out of the mean, so a
text's vector does not depend on the batch it lands in, up to float noise
(below 1e-5 in absolute value on CPU; tested). Vectors computed on a GPU differ
from CPU ones by such noise too; the cache does not tell them apart.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import time
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cud_bench import numerics
from cud_bench.errors import CudBenchError
from cud_bench.io import atomic_path, cache_dir, count_rebuilt
from cud_bench.models.encoders import encoders, load_encoder

PADDINGS = ("longest", "max_length")
SHARD_ROWS = 2048  # texts encoded between two cache writes: an interrupted run loses at most this many
KEY_BYTES = 32  # a sha256 digest


def encode(
    encoder_name: str,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
    cache_root: str | os.PathLike | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Mean-pooled features, shape (len(texts), hidden size), float32, in input order.

    ``max_length`` (tokens; default: the encoder's, 128) truncates longer texts.
    Only texts not yet in the cache are encoded, each distinct text once; the
    model is not even loaded when every text is cached. ``cache_root`` defaults
    to ``<cache>/features`` (``features-portable`` in portable numerics mode).
    ``on_progress(done, total)`` is told after each batch how many of the missing texts are encoded.
    """
    spec = encoders.get(encoder_name).spec
    max_length = spec.max_length if max_length is None else max_length
    _check_texts(texts)
    keys = [text_key(t) for t in texts]
    root = Path(cache_root) if cache_root is not None else cache_dir() / numerics.cache_name("features")
    store = _store(root / f"{spec.id}-{spec.spec_hash()}" / f"len{max_length}", spec.hidden_size)
    found = store.get(keys)
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    if missing:
        text_of = dict(zip(keys, texts))
        tokenizer, model = _loaded(encoder_name)
        with tqdm(total=len(missing), disable=not progress, unit="text", desc=f"encoding with {spec.id}") as bar:
            done = 0

            def on_batch(n: int) -> None:
                nonlocal done
                done += n
                bar.update(n)
                if on_progress is not None:
                    on_progress(done, len(missing))

            for start in range(0, len(missing), SHARD_ROWS):
                chunk = missing[start : start + SHARD_ROWS]
                vectors = embed(
                    tokenizer, model, [text_of[k] for k in chunk], max_length=max_length, batch_size=batch_size,
                    on_batch=on_batch,
                )
                _check_finite(vectors, [text_of[k] for k in chunk], spec.id, store.folder)
                store.put(chunk, vectors)
                found.update(zip(chunk, vectors))
    if not keys:
        return np.zeros((0, spec.hidden_size), np.float32)
    return np.stack([found[k] for k in keys])


def embed(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    batch_size: int = 64,
    padding: str = "longest",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean-pooled last hidden states, (len(texts), hidden size) float32, in input order; no cache.

    ``padding="longest"`` sorts the texts by token length (longest first, so
    an out-of-memory error comes at once) and pads each batch to its longest
    text; ``"max_length"`` pads every text to ``max_length`` in input order,
    the slow way, kept for fixed shapes and as the benchmark's baseline.
    ``on_batch`` is told each batch's size once it is encoded (a progress bar's ``update``).
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 2 <= max_length <= tokenizer.model_max_length:
        raise ValueError(f"max_length must be in [2, {tokenizer.model_max_length}], got {max_length}")
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(-lengths, kind="stable") if padding == "longest" else np.arange(len(ids))
    out = np.empty((len(ids), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            width = max_length if padding == "max_length" else int(lengths[rows].max())
            input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, row in enumerate(rows):
                input_ids[j, : lengths[row]] = torch.tensor(ids[row])
                mask[j, : lengths[row]] = 1
            input_ids, mask = input_ids.to(model.device), mask.to(model.device)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            out[rows] = mean_pool(hidden, mask).float().cpu().numpy()
            if on_batch is not None:
                on_batch(len(rows))
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states (n, tokens, d) over the tokens where ``mask`` (n, tokens) is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def text_key(text: str) -> bytes:
    """The cache key of a text: the sha256 digest of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class FeatureStore:
    """Append-only shards of (text key -> float32 vector) rows in one folder.

    A shard is one ``.npz`` (``keys``: (n, 32) uint8 digests, ``vectors``: (n,
    dim) float32) written to a temporary file and renamed to a name no other
    writer can pick (time, pid, random). So concurrent writers need no lock and
    a reader never sees half a shard. A key in two shards (two processes that
    encoded the same text at once) is harmless: the first shard indexed wins.

    Shards are indexed by their keys when first seen and their vectors are read
    on first use; the folder is listed again on every lookup, so shards written
    by other processes are found. A shard that cannot be read (truncated,
    failing its zip CRC (the content checksum written with it), wrong shapes, a
    NaN) is skipped with a warning and renamed to
    ``*.corrupt``: its texts are simply encoded again.
    """

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = folder
        self.dim = dim
        self._index: dict[bytes, tuple[Path, int]] = {}
        self._seen: set[str] = set()
        self._vectors: dict[Path, np.ndarray] = {}

    def get(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """The stored vectors of those ``keys`` that are stored."""
        self._refresh()
        by_shard: dict[Path, list[bytes]] = defaultdict(list)
        for key in set(keys):
            if key in self._index:
                by_shard[self._index[key][0]].append(key)
        found: dict[bytes, np.ndarray] = {}
        for shard, shard_keys in by_shard.items():
            vectors = self._shard_vectors(shard)
            if vectors is not None:
                found.update((k, vectors[self._index[k][1]]) for k in shard_keys)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store one new shard; ``vectors`` is (len(keys), dim), finite (a NaN is never cached)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape {(len(keys), self.dim)}, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise CudBenchError(f"refusing to write non-finite feature vectors to the feature cache {self.folder}")
        path = self.folder / f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(4)}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.frombuffer(b"".join(keys), np.uint8).reshape(-1, KEY_BYTES), vectors=vectors)
            fh.flush()
            os.fsync(fh.fileno())
        self._seen.add(path.name)
        self._vectors[path] = vectors
        for row, key in enumerate(keys):
            self._index.setdefault(key, (path, row))

    def _refresh(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.npz")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            try:
                keys = _read_shard(path, "keys", self.dim)
            except _BadShard as exc:
                self._set_aside(path, exc)
                continue
            for row, key in enumerate(keys):
                self._index.setdefault(key.tobytes(), (path, row))

    def _shard_vectors(self, shard: Path) -> np.ndarray | None:
        if shard not in self._vectors:
            try:
                self._vectors[shard] = _read_shard(shard, "vectors", self.dim)
            except _BadShard as exc:
                self._set_aside(shard, exc)
                return None
        return self._vectors[shard]

    def _set_aside(self, shard: Path, reason: Exception) -> None:
        warnings.warn(
            f"feature cache shard {shard} is unreadable ({reason}); it is renamed to *.corrupt "
            "and its texts will be encoded again"
        )
        count_rebuilt("feature shard")
        with contextlib.suppress(FileNotFoundError):  # another process set it aside first
            shard.rename(shard.with_suffix(".corrupt"))
        self._index = {k: v for k, v in self._index.items() if v[0] != shard}


class _BadShard(Exception):
    pass


def _read_shard(path: Path, member: str, dim: int) -> np.ndarray:
    """One array of a shard, fully read (so the zip CRC is checked) and shape-checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"]
            array = keys if member == "keys" else data["vectors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise _BadShard(f"{type(exc).__name__}: {exc}") from exc
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != KEY_BYTES:
        raise _BadShard(f"keys have dtype {keys.dtype} and shape {keys.shape}")
    if member == "vectors" and (array.dtype != np.float32 or array.shape != (len(keys), dim)):
        raise _BadShard(f"vectors have dtype {array.dtype} and shape {array.shape}, expected ({len(keys)}, {dim})")
    if member == "vectors" and not np.isfinite(array).all():
        raise _BadShard("vectors contain NaN or infinite values")
    return array


@functools.cache
def _store(folder: Path, dim: int) -> FeatureStore:
    """One store per folder and process, so its index is built once."""
    return FeatureStore(folder, dim)


@functools.cache
def _loaded(encoder_name: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """One loaded model per encoder and process, loaded only when a text needs encoding."""
    return load_encoder(encoder_name)


def _check_finite(vectors: np.ndarray, texts: Sequence[str], encoder: str, folder: Path) -> None:
    """A model that produced NaN once must not poison every later run: refuse before caching."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise CudBenchError(
            f"encoder {encoder!r} produced NaN or infinite features for {len(bad)} of {len(texts)} texts "
            f"(first: {texts[bad[0]][:60]!r}); nothing was written to the feature cache {folder}"
        )


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is a {type(text).__name__}, not a str")
