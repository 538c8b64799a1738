"""Lexical corruption of a task's test texts, deterministic per example.

Each corruption is an nlpaug augmenter (``augmenter``, as ``module:Class``)
with fixed ``options`` and one rate option that the severity sets: severities
1..5 set it to :data:`LEVELS`, a fraction of the words of each text (nlpaug
rounds the count up, so at least one word changes). Every option is in the
spec's ``params``; nothing is left to nlpaug's defaults that matter for rates
(its default caps of 10 edits per text are lifted). Texts are split on
whitespace and rejoined with single spaces, so runs of whitespace collapse;
nlpaug's own tokenizer would split "don't" into "don ' t" everywhere.

Determinism: nlpaug draws every random choice through its ``sample`` method,
which uses the global ``random`` module. Here that method is replaced on each
augmenter by one that draws from a private :class:`HashStream`, keyed for
every example by ``f"{example id}|{shift id}|{severity}|{seed}"``. An
example's corruption therefore depends on nothing else: not the batch, the
order, the process, or any other use of ``random``; the global generator is
never touched.

Which texts (version 2): a task's corrupted set is the first :data:`SIZE`
examples of the test split the suite *scores* (after its cap) in
:func:`shifts.selection.stratified_hash_order`, so every prefix is stratified by
class; they are kept in test-split order. The choice depends on the example ids
and labels alone: the same for every corruption and severity (paired), every
method and every training seed, fixed by the shift version like a corrupted image
benchmark. The clean originals of the same texts are the ``corruption-clean``
reference set (:class:`CleanOriginals`), scored beside them, so corrupted minus
clean is paired example by example: position ``j`` of every corrupted set and of
the reference is one test text. Version 1 took the first 30 texts of the whole
test split in plain hash order, unstratified: too few to resolve the effects.
Sets are cached as JSON under ``<cache>/shifts/corruption/``, keyed by the ids.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import random
import struct
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cud_bench.data.tasks import get_task, task_cache_path
from cud_bench.io import CacheMismatch, cache_dir, count_rebuilt, read_json_checked, write_json_checked
from shifts.base import EVERY_TASK, ScoredSplits, Shift, ShiftedSet, ShiftInputs, ShiftSpec
from shifts.selection import stratified_hash_order

log = logging.getLogger(__name__)


VERSION = 2  # of every corruption shift: bump when the texts a set holds change
# Texts per task x corruption x severity (the scored test split's size if smaller). Sized for
# power: see the README's power table; the one number to change (with VERSION) to resize them.
SIZE = 300
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5)
NLPAUG = "pypi:nlpaug==1.1.11"
# Character corruptions: the level is the fraction of words hit; one character in each word hit
# (two in words over 10 characters), words of 2 or more characters, no cap on either count.
CHAR_OPTIONS = {
    "aug_char_p": 0.1,
    "aug_char_min": 1,
    "aug_char_max": None,
    "aug_word_min": 1,
    "aug_word_max": None,
    "min_char": 2,
}
CHAR_LEVELS = "fraction of words with a character error"
# Word corruptions: the level is the fraction of words changed, no cap on the count.
WORD_OPTIONS = {"aug_min": 1, "aug_max": None}


def example_key(example_id: str, shift_id: str, severity: int, seed: int) -> bytes:
    """What one example's random stream is drawn from (see :class:`HashStream`)."""
    return f"{example_id}|{shift_id}|{severity}|{seed}".encode()


class HashStream(random.Random):
    """``random.Random`` whose bits are ``blake2b(key ‖ block number)``: one stream per example key.

    Why not reseed a Mersenne Twister per example: seeding one costs about as
    much as corrupting a short text. Here "seeding" just stores the key; each
    64-byte blake2b block then gives sixteen 32-bit words, drawn last first. The
    stream is a pure function of the key, like a counter-mode cipher.
    """

    def seed(self, a: bytes | str | int | None = None, version: int = 2) -> None:
        self._key = a if isinstance(a, bytes) else str(a).encode("utf-8")
        self._block = 0
        self._words: list[int] = []

    def getstate(self) -> tuple[bytes, int, tuple[int, ...]]:
        return self._key, self._block, tuple(self._words)

    def setstate(self, state: tuple[bytes, int, tuple[int, ...]]) -> None:
        self._key, self._block, words = state
        self._words = list(words)

    def _word(self) -> int:
        """The next 32 random bits."""
        if not self._words:
            digest = hashlib.blake2b(self._key + self._block.to_bytes(8, "little"), digest_size=64).digest()
            self._words = list(struct.unpack("<16I", digest))  # drawn from the end
            self._block += 1
        return self._words.pop()

    def random(self) -> float:
        return ((self._word() >> 5) * 67108864 + (self._word() >> 6)) * 2.0**-53  # 53 bits, as CPython's own

    def getrandbits(self, k: int) -> int:
        if not 0 <= k <= 32:
            raise ValueError(f"HashStream gives at most 32 bits at once, not {k}")
        return self._word() >> (32 - k)

    def _randbelow(self, n: int) -> int:
        """Uniform in [0, n) by rejection on the top bits; the hot path of choice() and sample()."""
        shift = 32 - n.bit_length()
        if shift < 0:
            raise ValueError(f"HashStream draws below 2**32 only, not below {n}")
        r = self._word() >> shift
        while r >= n:
            r = self._word() >> shift
        return r


class _Sampler:
    """Stands in for nlpaug's ``Augmenter.sample`` (``random.sample`` on the global generator)."""

    def __init__(self) -> None:
        self.rng = HashStream()

    def __call__(self, population: Sequence[Any], num: int) -> list[Any]:
        if num == 1:  # nlpaug's most frequent call: one uniform pick, cheaper by choice()
            return [self.rng.choice(population)]
        return self.rng.sample(population, num)


class Corruption(Shift):
    """A lexical corruption applicable to every task; see the module docstring for the guarantees."""

    def __init__(
        self,
        name: str,
        *,
        augmenter: str,
        rate_option: str,
        options: Mapping[str, Any],
        description: str,
        level_meaning: str,
        source: str = NLPAUG,
        version: int = VERSION,
    ) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="corruption",
            kind="labelled",
            tasks=(EVERY_TASK,),
            severities=tuple(range(1, len(LEVELS) + 1)),
            levels=LEVELS,
            max_examples=SIZE,
            source=source,
            params=(("augmenter", augmenter), ("rate_option", rate_option), *sorted(options.items())),
            level_meaning=level_meaning,
            description=description,
        )
        self._augmenter_path = augmenter
        self._rate_option = rate_option
        self._options = dict(options)
        self._sampler = _Sampler()
        self._augmenters: dict[int, Any] = {}

    def corrupt(self, ids: Sequence[str], texts: Sequence[str], severity: int, seed: int = 0) -> list[str]:
        """``texts[i]`` corrupted as example ``ids[i]``; the same pair always gives the same text."""
        augmenter = self._augmenter(severity)
        action = getattr(augmenter, augmenter.action)  # e.g. substitute(text) -> text
        out = []
        for example_id, text in zip(ids, texts, strict=True):
            self._sampler.rng.seed(example_key(example_id, self.spec.id, severity, seed))
            out.append(action(text))
        return out

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        task_spec = get_task(task).spec
        splits = inputs.splits_of(task)
        rows = corrupted_rows(splits, self.cap(inputs))
        ids = [splits.test_ids[i] for i in rows]
        digest = hashlib.blake2b("\n".join(ids).encode("utf-8"), digest_size=8).hexdigest()
        path = (
            cache_dir() / "shifts" / "corruption" / f"{self.spec.name}-v{self.spec.version}-{self.spec.spec_hash()}"
            / task_cache_path(task_spec).name / f"severity{severity}-seed{seed}-{digest}.json"
        )  # fmt: skip
        stored = _read_cached_set(path)
        if stored is None:
            stored = {
                "ids": ids,
                "texts": self.corrupt(ids, [splits.test_texts[i] for i in rows], severity, seed),
                "labels": [int(splits.test_labels[i]) for i in rows],
            }
            write_json_checked(path, stored)
        return ShiftedSet(
            shift=self.spec.id,
            task=task_spec.id,
            severity=severity,
            kind="labelled",
            ids=tuple(stored["ids"]),
            texts=tuple(stored["texts"]),
            labels=tuple(stored["labels"]),
        )

    def _augmenter(self, severity: int) -> Any:
        if severity not in self._augmenters:
            module, _, cls = self._augmenter_path.partition(":")
            augmenter = getattr(importlib.import_module(module), cls)(
                **self._options,
                **{self._rate_option: self.level(severity)},
                tokenizer=str.split,
                reverse_tokenizer=" ".join,
            )
            augmenter.sample = self._sampler  # every random draw nlpaug makes goes through sample()
            self._augmenters[severity] = augmenter
        return self._augmenters[severity]


def _read_cached_set(path: Path) -> dict[str, Any] | None:
    """A cached corrupted set, or None (absent, or failing its hash: named in the log, then rebuilt)."""
    if not path.is_file():
        return None
    try:
        return read_json_checked(path)
    except CacheMismatch as exc:
        log.warning("%s; rebuilding it", exc)
        count_rebuilt("corrupted set")
        return None


def corrupted_rows(splits: ScoredSplits, cap: int | None) -> np.ndarray:
    """Positions (increasing) in the scored test split of the texts every corruption corrupts:
    the first ``cap`` in the stratified hash order (all of them when ``cap`` is None or larger)."""
    order = stratified_hash_order(splits.test_ids, splits.test_labels)
    return np.sort(order if cap is None else order[:cap])


class CleanOriginals(Shift):
    """The clean test examples every corruption corrupts (kind ``subset``): the paired reference.

    Scored from the clean predictions, beside the corrupted sets: corrupted minus clean
    on the same texts is then a paired difference, free of the sampling error that made
    version 1's corrupted accuracy exceed clean accuracy on two tasks.
    """

    reference_for = "corruption"  # the runner scores it whenever it scores a corruption

    def __init__(self, name: str, *, description: str, version: int = 1) -> None:
        self.spec = ShiftSpec(
            name=name,
            version=version,
            family="reference",
            kind="subset",
            tasks=(EVERY_TASK,),
            severities=(1,),
            levels=(),
            max_examples=SIZE,
            source=f"the scored test examples that the corruption shifts (v{VERSION}) corrupt",
            params=(("corruption_version", VERSION),),
            description=description,
        )

    def build(self, task: str, severity: int, seed: int, inputs: ShiftInputs) -> ShiftedSet:
        splits = inputs.splits_of(task)
        return self.subset(task, severity, splits.test_ids, corrupted_rows(splits, self.cap(inputs)))
