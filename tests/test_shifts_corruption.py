"""Lexical corruptions: determinism per example, monotone edit rates, offline resources, caching."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cud_bench.errors import DataError
from cud_bench.io import cache_dir
from shifts import ScoredSplits, get_shift, shifts
from shifts.augmenters import respell, split_token, swappable
from shifts.corruption import SIZE, VERSION, HashStream, example_key
from shifts.glove import compute_neighbours, neighbour_table
from shifts.selection import capped, stratified_hash_order, task_rows
from shifts.wordnet import LEXNAMES, lexnames_text, synonyms, wordnet

CORRUPTIONS = [name for name, shift in shifts.items() if shift.spec.family == "corruption"]


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[str]]:
    """60 real test snippets (ids, texts) of rt-polarity, the same 60 every run."""
    rows = capped(task_rows("rt-polarity", ("test",)), 60)
    return rows["id"].tolist(), rows["text"].tolist()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache holding links to the real cache's data, but its own corrupted sets and WordNet folder."""
    real = cache_dir()
    for entry in real.iterdir():
        if entry.name not in ("shifts", "nltk_data"):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / "shifts").mkdir()
    if (real / "shifts" / "glove").is_dir():
        (tmp_path / "shifts" / "glove").symlink_to(real / "shifts" / "glove")
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path))
    return tmp_path


def test_hash_stream_is_blake2b_in_counter_mode():
    stream = HashStream(b"key")
    block0 = struct.unpack("<16I", hashlib.blake2b(b"key" + bytes(8), digest_size=64).digest())
    block1 = struct.unpack("<16I", hashlib.blake2b(b"key" + (1).to_bytes(8, "little"), digest_size=64).digest())
    assert [stream.getrandbits(32) for _ in range(20)] == [*block0[::-1], *block1[::-1][:4]]
    state = stream.getstate()
    after = [stream.random() for _ in range(5)]
    stream.setstate(state)
    assert [stream.random() for _ in range(5)] == after
    assert all(0.0 <= x < 1.0 for x in after)


def test_hash_stream_choices_are_uniform():
    counts = Counter(HashStream(f"k{i}").choice("abcde") for i in range(20_000))
    assert set(counts) == set("abcde")
    assert max(abs(c - 4000) for c in counts.values()) < 250  # ~4 standard deviations


def test_corruption_is_independent_of_batch_order_and_global_random(sample):
    ids, texts = sample
    for name in CORRUPTIONS:
        shift = get_shift(name)
        whole = shift.corrupt(ids, texts, 3)
        random.seed(1)
        np.random.seed(1)
        one_by_one = [shift.corrupt([i], [t], 3)[0] for i, t in zip(ids, texts, strict=True)]
        reverse = shift.corrupt(ids[::-1], texts[::-1], 3)[::-1]
        assert whole == one_by_one == reverse, name
        assert sum(a != b for a, b in zip(whole, texts, strict=True)) >= 0.9 * len(texts), name


def test_corruption_is_the_same_in_another_process(sample):
    ids, texts = sample[0][:10], sample[1][:10]
    script = (
        "import json, sys\nfrom shifts import shifts\n"
        "ids, texts, names = json.load(sys.stdin)\n"
        "print(json.dumps({n: shifts.get(n).corrupt(ids, texts, 2, seed=7) for n in names}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps([ids, texts, CORRUPTIONS]),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    here = {name: get_shift(name).corrupt(ids, texts, 2, seed=7) for name in CORRUPTIONS}
    assert json.loads(done.stdout) == here


def test_seed_and_severity_change_the_draw(sample):
    ids, texts = sample
    shift = get_shift("char-substitute")
    assert shift.corrupt(ids, texts, 3, seed=0) != shift.corrupt(ids, texts, 3, seed=1)
    assert example_key("a", "s@v1", 1, 0) != example_key("a", "s@v1", 2, 0)


def _word_edit_rate(before: str, after: str) -> float:
    """Word-level Levenshtein distance over the number of words before."""
    a, b = before.split(), after.split()
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1] / len(a)


def test_measured_edit_rate_grows_with_severity(sample):
    ids, texts = sample
    for name in CORRUPTIONS:
        shift = get_shift(name)
        rates = [
            np.mean([_word_edit_rate(t, c) for t, c in zip(texts, shift.corrupt(ids, texts, s), strict=True)])
            for s in shift.spec.severities
        ]
        assert np.all(np.diff(rates) > 0), (name, rates)
        assert 0.05 < rates[0] and rates[-1] < 1.2, (name, rates)


def _imbalanced_scored_split() -> ScoredSplits:
    """A stand-in for a suite's capped test split: 150 negative and 50 positive rt-polarity texts."""
    test = task_rows("rt-polarity", ("test",))
    rows = pd.concat([test[test["label"] == 0].iloc[:150], test[test["label"] == 1].iloc[:50]]).sort_values("id")
    train = task_rows("rt-polarity", ("train",))
    return ScoredSplits(tuple(rows["id"]), tuple(rows["text"]), rows["label"].to_numpy(), train["label"].to_numpy())


def test_corruption_sets_are_drawn_stratified_from_the_scored_split_and_cached(private_cache, monkeypatch):
    """Version 1 took the first 30 texts of the whole test split in plain hash order, whatever the
    suite scored and whatever their classes; version 2 draws a stratified prefix of the scored split."""
    shift = get_shift("char-keyboard")
    assert shift.spec.id == f"char-keyboard@v{VERSION}" == "char-keyboard@v2" and shift.spec.max_examples == SIZE == 300
    scored = _imbalanced_scored_split()
    first = shift.apply("rt-polarity", 2, splits=scored, max_examples=40)
    assert len(first) == 40 and set(first.ids) <= set(scored.test_ids)
    assert Counter(first.labels) == {0: 30, 1: 10}  # 3:1 as in the scored split
    position = {id_: i for i, id_ in enumerate(scored.test_ids)}
    rows = [position[i] for i in first.ids]
    assert rows == sorted(rows)  # kept in test-split order
    assert list(first.labels) == [int(scored.test_labels[r]) for r in rows]
    # a larger cap draws a superset (so the smoke suite's sets are a stratified part of a larger suite's)
    larger = shift.apply("rt-polarity", 2, splits=scored, max_examples=120)
    assert set(first.ids) < set(larger.ids) and Counter(larger.labels) == {0: 90, 1: 30}
    assert len(shift.apply("rt-polarity", 2, splits=scored)) == 200  # a split smaller than SIZE: all of it
    assert len(shift.apply("rt-polarity", 1, max_examples=None)) == SIZE  # default: the whole test split
    cached = list((private_cache / "shifts" / "corruption").rglob("severity2-seed0-*.json"))
    assert len(cached) == 3

    def refuse(*args, **kwargs):
        raise AssertionError("a cached set was corrupted again")

    monkeypatch.setattr(shift, "corrupt", refuse)
    assert shift.apply("rt-polarity", 2, splits=scored, max_examples=40) == first
    # every corruption and severity keeps the same texts, so they compare pair by pair; the clean
    # reference holds those texts' rows in the same order
    for name in ("word-delete", "char-swap"):
        assert get_shift(name).apply("rt-polarity", 1, splits=scored, max_examples=40).ids == first.ids
    clean = get_shift("corruption-clean").apply("rt-polarity", 1, splits=scored, max_examples=40)
    assert clean.kind == "subset" and clean.indices == tuple(rows) and clean.ids == first.ids
    assert get_shift("corruption-clean").spec.family == "reference"


def test_stratified_hash_order_by_hand():
    ids = [f"x{i}" for i in range(12)]
    labels = [0] * 9 + [1] * 3
    order = stratified_hash_order(ids, labels)
    assert sorted(order.tolist()) == list(range(12))
    for k in range(1, 13):  # every prefix within one example of 3:1
        ones = sum(labels[i] for i in order[:k])
        assert abs(ones - k / 4) <= 1, (k, ones)
    # one example's place depends on ids and class sizes, not on the order they come in
    shuffled = list(reversed(range(12)))
    again = stratified_hash_order([ids[i] for i in shuffled], [labels[i] for i in shuffled])
    assert [shuffled[i] for i in again] == order.tolist()


def test_no_shift_opens_a_network_connection(private_cache, monkeypatch, sample):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    import nltk

    for target, attr in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                         (socket, "getaddrinfo"), (nltk, "download")):  # fmt: skip
        monkeypatch.setattr(target, attr, refuse)
    ids, texts = sample
    wordnet.cache_clear()  # the WordNet reader is built again, in the private cache,
    synonyms.cache_clear()  # even when earlier tests in this process looked these words up
    neighbour_table.cache_clear()
    try:
        for name in CORRUPTIONS:
            shift = get_shift(name)
            monkeypatch.setattr(shift, "_augmenters", {})  # nlpaug augmenters built again too
            assert len(shift.corrupt(ids[:5], texts[:5], 5)) == 5
        assert len(get_shift("word-synonym").apply("rt-polarity", 1, max_examples=30)) == 30
        for name in ("rt-polarity-to-tweets", "class-frequency"):
            assert len(get_shift(name).apply("rt-polarity", 1)) > 0
        assert (private_cache / "nltk_data" / "corpora" / "wordnet" / "lexnames").is_file()
    finally:
        wordnet.cache_clear()  # its files go with the private cache


def test_lexnames_file_follows_the_manual():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3" and lines[2] == "02\tadv.all\t4"


def test_missing_wordnet_names_the_debian_packages(private_cache, monkeypatch, tmp_path):
    from shifts import wordnet as wordnet_module

    monkeypatch.setattr(wordnet_module, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install --no-install-recommends wordnet-base wordnet-sense-index"):
        wordnet_module.wordnet_dir()


def test_wordnet_synonyms_offline():
    assert {"film", "flick", "motion_picture"} <= set(synonyms("movie"))
    assert "run" in synonyms("ran")  # morphy finds the base form
    assert synonyms("the") == () and "movie" not in synonyms("Movie")


def test_glove_neighbours_by_hand(tmp_path):
    vectors = np.array([[1, 0], [0.9, 0.1], [0.2, 1], [0.1, 0.9], [1, 1], [-1, 0]], dtype=np.float32)
    np.save(tmp_path / "emb.npy", vectors)
    pd.DataFrame({"index": ["aa", "ab", "ba", "b2", "cc", "dd"]}).to_parquet(tmp_path / "index.parquet")
    words, neighbours = compute_neighbours(tmp_path / "emb.npy", tmp_path / "index.parquet", vocab_size=4, k=2)
    assert words.tolist() == ["aa", "ab", "ba", "cc"]  # "b2" is not alphabetic; only the first 4 count
    # cosines: aa~ab .994, aa~ba .196, aa~cc .707, ab~ba .303, ab~cc .781, ba~cc .832
    assert neighbours.tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]


def test_glove_table_from_the_pinned_wheel():
    table = neighbour_table()
    assert len(table.words) == 20_000 and "film" in table["movie"][:3]
    assert "movie" not in table["movie"]


def test_token_helpers_keep_punctuation_and_case():
    assert split_token('"Great!') == ('"', "Great", "!")
    assert respell('"Great!', "fine") == '"Fine!' and respell("GOOD,", "fine") == "FINE,"
    assert swappable("Movie,") and not swappable("The") and not swappable("2004")
