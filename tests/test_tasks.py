"""Task registry, split rule, task cache, the seven offline tasks from the real files, hub loaders on fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from cud_bench.data.sources import LocalSource
from cud_bench.data.splits import stratified_holdout
from cud_bench.data.tasks import (
    Task,
    TaskSpec,
    build_task,
    get_task,
    load_task,
    register_local_task,
    task_cache_path,
    tasks,
)
from cud_bench.errors import CudBenchError, DataError
from cud_bench.registry import RegistryError

HUB_FIXTURES = Path(__file__).parent / "fixtures" / "hub"


# -- stratified_holdout -------------------------------------------------------------------
def test_holdout_counts_follow_the_documented_rule():
    labels = [0] * 10 + [1] * 3 + [2] * 1 + [3] * 2
    kept, held = stratified_holdout(labels, 0.2, (7,))
    # class 0: floor(2.0 + .5) = 2; class 1: floor(0.6 + .5) = 1; class 2: capped at n-1 = 0;
    # class 3: floor(0.4 + .5) = 0
    assert Counter(np.asarray(labels)[held].tolist()) == {0: 2, 1: 1}
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(labels)))
    assert list(kept) == sorted(kept) and list(held) == sorted(held)


def test_holdout_keeps_one_example_per_class_even_at_half():
    kept, held = stratified_holdout([5, 5], 0.5, (0,))  # floor(1.5) = 1 == n - 1
    assert len(kept) == 1 and len(held) == 1
    kept, held = stratified_holdout([5], 0.9, (0,))
    assert kept.tolist() == [0] and held.tolist() == []


def test_holdout_is_deterministic_and_seeded_per_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=500)
    first = stratified_holdout(labels, 0.1, (3,))[1]
    assert np.array_equal(first, stratified_holdout(labels, 0.1, (3,))[1])
    assert any(not np.array_equal(first, stratified_holdout(labels, 0.1, (s,))[1]) for s in (4, 5, 6))
    # a class's draw depends only on its own members: adding a new class elsewhere changes nothing for class 0
    extended = np.concatenate([labels, np.full(50, 9)])
    held_ext = stratified_holdout(extended, 0.1, (3,))[1]
    assert np.array_equal(first[labels[first] == 0], held_ext[extended[held_ext] == 0])


def test_holdout_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout([0, 1], 1.0, (0,))
    with pytest.raises(ValueError, match="non-negative"):
        stratified_holdout([0, -1], 0.1, (0,))


# -- build_task: the split rule ---------------------------------------------------------------
def _task(read, **fields) -> Task:
    spec = TaskSpec(**{"name": "toy", "version": 1, "label_names": ("neg", "pos"), "source": "test", **fields})
    return Task(spec, LocalSource({}), read)


def test_existing_test_split_is_kept_and_train_loses_leaking_duplicates():
    train = pd.DataFrame(
        {
            "text": [f"t{i}" for i in range(20)] + ["t0", "shared", "  "],
            "label": ["neg", "pos"] * 10 + ["pos", "neg", "pos"],
            "extra": range(23),
        }
    )
    test = pd.DataFrame({"text": ["shared", "u1", "u1"], "label": ["neg", "pos", "pos"], "extra": [0, 1, 2]})
    data = build_task(_task(lambda: {"train": train, "test": test.set_axis([5, 6, 7])}, val_fraction=0.1))
    assert list(data) == ["train", "validation", "test"]
    assert data["test"]["id"] == ["toy/test/5", "toy/test/6", "toy/test/7"]  # kept as is, duplicates too
    assert data["test"]["text"] == ["shared", "u1", "u1"]
    pool_ids = set(data["train"]["id"]) | set(data["validation"]["id"])
    assert pool_ids == {f"toy/train/{i}" for i in range(20)}  # row 20 (dup of t0), 21 (in test), 22 (blank) gone
    assert len(data["validation"]) == 2 and Counter(data["validation"]["label"]) == {0: 1, 1: 1}
    assert data["train"].features["label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert data["train"].column_names == ["id", "text", "label", "extra"]
    row = data["train"].to_pandas().set_index("id").loc["toy/train/3"]
    assert (row["text"], row["label"], row["extra"]) == ("t3", 1, 3)


def test_source_without_splits_gets_stratified_test_and_validation():
    frame = pd.DataFrame({"text": [f"x{i}" for i in range(200)], "label": ["neg"] * 150 + ["pos"] * 50})
    task = _task(lambda: {"all": frame}, test_fraction=0.2, val_fraction=0.1, split_seed=4)
    data = build_task(task)
    sizes = {split: Counter(data[split]["label"]) for split in data}
    # test: floor(.2 * 150 + .5) = 30 and 10; validation from the 120 / 40 left: 12 and floor(4.5) = 4
    assert sizes == {"test": {0: 30, 1: 10}, "validation": {0: 12, 1: 4}, "train": {0: 108, 1: 36}}
    ids = [set(data[s]["id"]) for s in data]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 200
    again = build_task(task)
    assert all(again[s]["id"] == data[s]["id"] for s in data)
    other_seed = build_task(_task(lambda: {"all": frame}, test_fraction=0.2, val_fraction=0.1, split_seed=5))
    assert other_seed["test"]["id"] != data["test"]["id"]


def test_labels_outside_the_label_names_are_refused():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["neg", "maybe"]})
    with pytest.raises(DataError, match=r"outside the task's label names: \['maybe'\]"):
        build_task(_task(lambda: {"all": frame}, test_fraction=0.2))


def test_missing_test_split_needs_a_fraction():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["neg", "pos"]})
    with pytest.raises(DataError, match="no 'test' split"):
        build_task(_task(lambda: {"train": frame}))


def test_extra_splits_pass_through_with_label_minus_one():
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["neg", "pos", "neg", "pos"]})
    oos = pd.DataFrame({"text": ["zzz"], "label": [None]})
    splits = {"train": frame.iloc[:2], "validation": frame.iloc[2:3], "test": frame.iloc[3:], "oos_test": oos}
    data = build_task(_task(lambda: splits))
    assert list(data) == ["train", "validation", "test", "oos_test"]
    assert data["oos_test"]["label"] == [-1] and data["oos_test"]["id"] == ["toy/oos_test/0"]


def test_a_split_that_comes_out_empty_is_an_error():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["neg", "pos"]})  # one per class: nothing to hold out
    with pytest.raises(DataError, match=r"split\(s\) \['validation'\] came out empty"):
        build_task(_task(lambda: {"train": frame, "test": frame.iloc[:1].assign(text="c")}))


# -- registry, ids, cache ---------------------------------------------------------------------
def test_versioned_ids_and_unknown_names():
    assert get_task("rt-polarity").spec.id == "rt-polarity@v1"
    assert get_task("rt-polarity@v1") is get_task("rt-polarity")
    with pytest.raises(CudBenchError, match="at version 1; version 2 is not available"):
        get_task("rt-polarity@v2")
    with pytest.raises(RegistryError, match="did you mean 'reuters-r52'"):
        get_task("reuters-r53")


def test_local_task_is_cached_and_a_corrupted_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path / "cache"))
    rows = [{"text": f"review {i}", "label": i % 2} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    task = register_local_task(
        "toy-local", {"train": str(tmp_path / "train.jsonl")}, ("bad", "good"), test_fraction=0.2
    )
    try:
        first = load_task("toy-local")
        path = task_cache_path(task.spec)
        assert path.is_dir() and path.name.startswith(f"toy-local-v1-{task.spec.spec_hash()}")
        assert {s: len(first[s]) for s in first} == {"train": 22, "validation": 2, "test": 6}
        assert first["train"].features["label"].names == ["bad", "good"]
        arrow = next(path.rglob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[:-10])  # corrupt the cache entry
        rebuilt = load_task("toy-local")
        assert all(rebuilt[s]["id"] == first[s]["id"] and rebuilt[s]["text"] == first[s]["text"] for s in first)
    finally:
        tasks.unregister("toy-local")


def test_task_whose_source_is_not_fetched_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"run `cud-bench data fetch --tasks rt-polarity`"):
        load_task("rt-polarity")


# -- the seven offline tasks, from the real cached files -----------------------------------
OFFLINE = {
    "rt-polarity": 2,
    "tweets-sentiment": 3,
    "drug-reviews": 3,
    "bbc-news": 5,
    "reuters-r8": 8,
    "20newsgroups": 20,
    "reuters-r52": 52,
}
ORIGINAL_TEST_SIZES = {"drug-reviews": 379, "reuters-r8": 2189, "20newsgroups": 7528, "reuters-r52": 2568}


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_task_loads_from_the_real_files(name):
    data = load_task(name)
    assert list(data) == ["train", "validation", "test"]
    assert data["train"].features["label"].num_classes == OFFLINE[name]
    frames = {split: data[split].to_pandas() for split in data}
    assert all(len(frame) > 0 for frame in frames.values())
    assert frames["train"]["label"].nunique() == OFFLINE[name]  # every class is trained on
    ids = pd.concat([frame["id"] for frame in frames.values()])
    assert ids.is_unique
    train_texts = set(frames["train"]["text"])
    assert not train_texts & set(frames["test"]["text"]) and not train_texts & set(frames["validation"]["text"])
    if name in ORIGINAL_TEST_SIZES:
        assert len(frames["test"]) == ORIGINAL_TEST_SIZES[name]
        assert frames["test"]["id"].str.startswith(f"{name}/test/").all()
    else:  # carved: 20% of the deduplicated pool
        total = sum(len(frame) for frame in frames.values())
        assert abs(len(frames["test"]) / total - 0.2) < 0.005


def test_offline_task_details():
    tweets = load_task("tweets-sentiment")["train"].to_pandas()
    assert tweets["confidence"].isna().any() and tweets["confidence"].between(0.25, 1.0).sum() > 20_000
    assert (tweets["raw_text"].str.split().str.join(" ") == tweets["text"]).all()
    rt = load_task("rt-polarity")["train"]
    assert rt.features["label"].names == ["rotten", "fresh"]
    drugs = load_task("drug-reviews")["test"]
    assert not any(t.startswith('"') or "&#039;" in t for t in drugs["text"])
    bbc = load_task("bbc-news")
    assert any("£" in t for t in bbc["train"]["text"])


# -- hub tasks on local files in the hub's format ---------------------------------------
@pytest.fixture
def hub_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUD_BENCH_HUB_MIRROR", str(HUB_FIXTURES))


def _fetch_and_load(name: str) -> datasets.DatasetDict:
    get_task(name).source.fetch()
    return load_task(name)


def test_banking77_from_hub_format(hub_mirror):
    data = _fetch_and_load("banking77")
    assert data["train"].features["label"].num_classes == 77
    names = data["test"].features["label"].names
    assert [names[i] for i in data["test"]["label"]] == ["card_arrival", "activate_my_card", "exchange_rate"]
    assert (len(data["train"]), len(data["validation"])) == (10, 2)  # 1 of 5 per class to validation


def test_clinc150_keeps_out_of_scope_apart(hub_mirror):
    data = _fetch_and_load("clinc150")
    assert data["train"].features["label"].num_classes == 150
    assert "oos" not in data["train"].features["label"].names
    assert {s: len(data[s]) for s in data} == {
        "train": 4, "validation": 2, "test": 2, "oos_train": 2, "oos_validation": 1, "oos_test": 2,
    }  # fmt: skip
    names = data["test"].features["label"].names
    assert [names[i] for i in data["test"]["label"]] == ["weather", "time"]
    assert data["oos_test"]["label"] == [-1, -1]
    assert data["oos_test"]["text"][0] == "what is the capital of mongolia"


def test_massive_trec_and_ag_news_from_hub_format(hub_mirror):
    massive = _fetch_and_load("massive")
    names = massive["test"].features["label"].names
    assert len(names) == 60 and [names[i] for i in massive["test"]["label"]] == ["weather_query", "play_music"]
    assert massive["test"]["text"][0] == "do i need an umbrella today"  # from `utt`
    trec = _fetch_and_load("trec")
    coarse = trec["test"].features["label"].names
    assert [coarse[i] for i in trec["test"]["label"]] == ["NUM", "LOC", "HUM"]
    assert len(trec["validation"]) == 1  # 1 of the 5 DESC questions; the other classes are too small
    ag = _fetch_and_load("ag-news")
    assert ag["test"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]
    assert ag["test"]["label"] == [2, 3]


def test_hub_label_names_that_changed_upstream_are_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "CogComp" / "trec" / "default"
    mirror.mkdir(parents=True)
    features = datasets.Features(
        {"text": datasets.Value("string"), "coarse_label": datasets.ClassLabel(names=["DESC", "ENTY", "ABBR",
                                                                                      "HUM", "NUM", "LOC"])}
    )  # fmt: skip
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"text": ["Who was Galileo ?"], "coarse_label": [3]}, features=features).to_parquet(
            str(mirror / f"{split}.parquet")
        )
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUD_BENCH_HUB_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DataError, match="hub:CogComp/trec/default: the names of 'coarse_label' differ"):
        _fetch_and_load("trec")
