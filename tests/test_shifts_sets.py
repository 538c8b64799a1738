"""Domain transfer, held-out classes, frequency buckets and ambiguity on the real data, and their tasks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cud_bench.data.task_defs._longtail import exponential_profile
from cud_bench.data.task_defs._newsgroups import HELD_OUT_GROUPS, SOURCE_GROUPS, SUPER_OF, TARGET_GROUPS
from cud_bench.data.task_defs._tweet_collections import collection_of
from cud_bench.data.tasks import get_task, load_task
from cud_bench.errors import CudBenchError
from cud_bench.suites import suites
from cud_bench.taskdata import prepare_task
from shifts import ScoredSplits, TeacherProbs, get_shift, shifts
from shifts.longtail import HEAD, TAIL
from shifts.selection import task_rows


def _texts(task: str) -> set[str]:
    data = load_task(task)
    return set().union(*(data[split]["text"] for split in data))


def _labelled_by_source(shifted, source_task: str) -> list[str]:
    """The source task's label name of each example of ``shifted``."""
    rows = task_rows(source_task).set_index("id")
    names = get_task(source_task).spec.label_names
    return [names[i] for i in rows.loc[list(shifted.ids), "label"]]


@pytest.mark.parametrize(
    "name", [n for n, s in shifts.items() if s.spec.family in ("domain", "held-out") and n != "clinc150-oos"]
)
def test_shifted_texts_are_disjoint_from_the_training_task(name):
    shift = get_shift(name)
    (task,) = shift.spec.tasks
    shifted = shift.apply(task, 1)
    assert 0 < len(shifted) <= shift.spec.max_examples
    assert not set(shifted.texts) & _texts(task)
    assert len(set(shifted.ids)) == len(shifted)


def test_rt_polarity_to_tweets_maps_labels_by_name():
    shift = get_shift("rt-polarity-to-tweets")
    shifted = shift.apply("rt-polarity", 1)
    assert len(shifted) == shift.spec.max_examples
    rt_names = get_task("rt-polarity").spec.label_names
    expected = {"negative": "rotten", "positive": "fresh"}
    source = _labelled_by_source(shifted, "tweets-sentiment")
    assert [rt_names[i] for i in shifted.labels] == [expected[s] for s in source]
    assert 0.2 < np.mean(shifted.labels) < 0.8  # both classes are there


def test_drug_reviews_are_all_positive_and_negative_reviews():
    shift = get_shift("rt-polarity-to-drug-reviews")
    shifted = shift.apply("rt-polarity", 1)
    rows = task_rows("drug-reviews")
    names = get_task("drug-reviews").spec.label_names
    polar = rows[[names[i] in ("negative", "positive") for i in rows["label"]]]
    eligible = set(polar["id"]) - set(polar[polar["text"].isin(_texts("rt-polarity"))]["id"])
    assert set(shifted.ids) <= eligible and len(shifted) == min(len(eligible), shift.spec.max_examples)


@pytest.mark.parametrize("collection", ["nfl", "self-driving", "apple"])
def test_tweet_collections_keep_their_own_tweets(collection):
    shifted = get_shift(f"tweets-airline-to-{collection}").apply("tweets-airline", 1)
    raw = task_rows("tweets-sentiment").set_index("id").loc[list(shifted.ids), "raw_text"]
    assert all(collection_of(t) == collection for t in raw)
    assert _labelled_by_source(shifted, "tweets-sentiment") == [
        get_task("tweets-airline").spec.label_names[i] for i in shifted.labels
    ]


def test_tweets_airline_is_the_airline_collection():
    data = load_task("tweets-airline")
    raw = [t for split in data for t in data[split]["raw_text"]]
    assert len(raw) == 14_365 and all(collection_of(t) == "airline" for t in raw)
    assert all(re.search(r"@\w+", t) for t in raw[:100])


def test_newsgroup_subgroup_transfer_crosses_groups():
    assert set(SOURCE_GROUPS).isdisjoint(TARGET_GROUPS) and len(SOURCE_GROUPS) + len(TARGET_GROUPS) == 19
    task = load_task("20newsgroups-subgroups")
    assert task["train"].features["label"].names == ["comp", "rec", "sci", "politics", "religion"]
    shifted = get_shift("20newsgroups-subgroups-to-target").apply("20newsgroups-subgroups", 1)
    groups = _labelled_by_source(shifted, "20newsgroups")
    assert set(groups) == set(TARGET_GROUPS)
    names = task["train"].features["label"].names
    assert [names[i] for i in shifted.labels] == [SUPER_OF[g] for g in groups]


def test_held_out_groups_are_out_of_scope():
    task = load_task("20newsgroups-15groups")
    assert not set(task["train"].features["label"].names) & set(HELD_OUT_GROUPS)
    shift = get_shift("20newsgroups-heldout-groups")
    shifted = shift.apply("20newsgroups-15groups", 1)
    assert shifted.kind == "out-of-scope" and len(shifted) == shift.spec.max_examples and not shifted.labels
    assert set(_labelled_by_source(shifted, "20newsgroups")) == set(HELD_OUT_GROUPS)


def test_clinc150_needs_its_hub_data_and_says_so():
    shift = get_shift("clinc150-oos")
    assert shift.applies_to("clinc150") and shift.spec.kind == "out-of-scope"
    if not get_task("clinc150").source.is_cached():
        with pytest.raises(CudBenchError, match="clinc150"):
            shift.apply("clinc150", 1)


@pytest.mark.parametrize("task", ["reuters-r52", "20newsgroups-lt100", "rt-polarity"])
def test_frequency_buckets_partition_the_test_set(task):
    shift = get_shift("class-frequency")
    data = load_task(task)
    counts = np.bincount(data["train"]["label"], minlength=get_task(task).spec.num_classes)
    labels = np.asarray(data["test"]["label"])
    buckets = [shift.apply(task, s) for s in (1, 2, 3)]
    seen = np.concatenate([b.indices for b in buckets]).astype(int)
    assert sorted(seen.tolist()) == list(range(len(labels)))
    head, medium, tail = (counts[labels[list(b.indices)]] for b in buckets)
    assert np.all(head >= HEAD) and np.all((medium >= TAIL) & (medium < HEAD)) and np.all(tail < TAIL)
    assert [data["test"]["id"][i] for i in buckets[2].indices] == list(buckets[2].ids)


def test_frequency_buckets_count_the_training_labels_the_models_learn_from():
    """Version 1 counted the whole train split; a suite trains on its capped split, where a class
    with 100+ examples in the full split can have a handful."""
    shift = get_shift("class-frequency")
    assert shift.spec.id == "class-frequency@v2"
    data = prepare_task("reuters-r52", suites.get("cpu"))  # train capped at 2,000 of 6,532
    scored = ScoredSplits(data.test.ids, data.test.texts, data.test.labels, data.train.labels)
    capped_counts = np.bincount(data.train.labels, minlength=data.num_classes)
    full_counts = np.bincount(ScoredSplits.whole("reuters-r52").train_labels, minlength=data.num_classes)
    buckets = [shift.apply("reuters-r52", s, splits=scored) for s in (1, 2, 3)]
    assert sorted(np.concatenate([b.indices for b in buckets]).astype(int).tolist()) == list(range(len(data.test.ids)))
    head, medium, tail = (capped_counts[data.test.labels[list(b.indices)]] for b in buckets)
    assert np.all(head >= HEAD) and np.all((medium >= TAIL) & (medium < HEAD)) and np.all(tail < TAIL)
    assert [data.test.ids[i] for i in buckets[0].indices] == list(buckets[0].ids)
    # the definitions differ on this task: some test examples change bucket
    head_by_full_counts = np.flatnonzero(np.isin(data.test.labels, np.flatnonzero(full_counts >= HEAD)))
    assert len(buckets[0]) < len(head_by_full_counts)


def test_long_tail_variants_follow_the_exponential_profile():
    assert exponential_profile(100, 3, 100) == [100, 10, 1]
    assert exponential_profile(377, 20, 10)[::19] == [377, 38]
    variants = {}
    for ratio in (10, 100):
        data = load_task(f"20newsgroups-lt{ratio}")
        labels = np.concatenate([data["train"]["label"], data["validation"]["label"]])
        assert np.bincount(labels).tolist() == exponential_profile(377, 20, ratio)
        assert data["test"].num_rows == load_task("20newsgroups")["test"].num_rows  # balanced, untouched
        variants[ratio] = {i.rsplit("/", 1)[1] for s in ("train", "validation") for i in data[s]["id"]}
    assert variants[100] < variants[10]


def test_low_agreement_subsets_by_hand():
    shift = get_shift("tweets-low-agreement")
    test = load_task("tweets-sentiment")["test"].to_pandas()
    below_07, below_06 = (set(shift.apply("tweets-sentiment", s).indices) for s in (1, 2))
    assert below_07 == set(np.flatnonzero(test["confidence"] < 0.7))
    assert below_06 == set(np.flatnonzero(test["confidence"] < 0.6)) and below_06 < below_07
    with pytest.raises(CudBenchError, match="does not apply"):
        shift.apply("rt-polarity", 1)


def test_teacher_disagreement_by_hand():
    shift = get_shift("teacher-disagreement")
    assert shift.spec.id == "teacher-disagreement@v2"
    ids = tuple(load_task("rt-polarity")["test"]["id"])
    agree = np.tile([0.8, 0.2], (len(ids), 1))
    other = agree.copy()
    other[[3, 7]] = [0.3, 0.7]
    shifted = shift.apply("rt-polarity", 1, teacher_probs=TeacherProbs(ids, (agree, agree, other)))
    assert shifted.indices == (3, 7) and shifted.ids == (ids[3], ids[7]) and shifted.kind == "subset"
    assert len(shift.apply("rt-polarity", 1, teacher_probs=TeacherProbs(ids, (agree, agree)))) == 0
    # probabilities for a reordered subset of the test split: indices still point into the full split
    picked = (ids[9], ids[7], ids[1])
    some = TeacherProbs(picked, (agree[:3], np.array([[0.8, 0.2], [0.3, 0.7], [0.8, 0.2]])))
    assert shift.apply("rt-polarity", 1, teacher_probs=some).indices == (7,)
    with pytest.raises(CudBenchError, match="at least 2 teachers"):
        shift.apply("rt-polarity", 1, teacher_probs=TeacherProbs(ids, (agree,)))
    with pytest.raises(CudBenchError, match="of shape"):
        shift.apply("rt-polarity", 1, teacher_probs=TeacherProbs(ids, (agree, agree[:10])))
    with pytest.raises(CudBenchError, match="not in task"):
        shift.apply("rt-polarity", 1, teacher_probs=TeacherProbs(("nope",), (agree[:1], agree[:1])))


def test_teacher_disagreement_indexes_the_scored_split():
    shift = get_shift("teacher-disagreement")
    whole = ScoredSplits.whole("rt-polarity")
    scored = ScoredSplits(whole.test_ids[100:140], whole.test_texts[100:140], whole.test_labels[100:140], whole.train_labels)
    agree = np.tile([0.8, 0.2], (40, 1))
    other = agree.copy()
    other[[5, 9]] = [0.3, 0.7]
    shifted = shift.apply("rt-polarity", 1, splits=scored, teacher_probs=TeacherProbs(scored.test_ids, (agree, other)))
    assert shifted.indices == (5, 9) and shifted.ids == (whole.test_ids[105], whole.test_ids[109])
    with pytest.raises(CudBenchError, match="scored test split"):
        shift.apply("rt-polarity", 1, splits=scored, teacher_probs=TeacherProbs(whole.test_ids[:2], (agree[:2], agree[:2])))
