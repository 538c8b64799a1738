"""Per-row summaries of summarised sets: the cells keep uniform-bin membership, stand for their
midpoints, keep the predicted class the most probable one, and score what they can score."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.special import softmax

from cud_bench import metrics, summaries
from cud_bench.scoring import scores, stored_probs
from leaderboard import entry as entry_format


def _stored(rng: np.random.Generator, n: int, c: int, sharpness: float = 2.0) -> np.ndarray:
    return stored_probs(rng.normal(0.0, sharpness, (n, c)))


def _uniform_bin(confidence: np.ndarray) -> np.ndarray:
    """15 uniform bins, (lo, hi]; a confidence of exactly k/15 is in bin k - 1 (0-based)."""
    return np.ceil(np.round(confidence * 15, 9)).astype(int)


@pytest.mark.parametrize("c", [2, 3, 7, 52])
def test_cells_keep_the_uniform_bin_and_stand_for_their_midpoint(c):
    rng = np.random.default_rng(c)
    probs = _stored(rng, 4000, c, sharpness=3.0)
    summary = summaries.summarise(probs, 1.0)
    exact = (probs.astype(np.float64) / probs.astype(np.float64).sum(1, keepdims=True)).max(1)
    got = summary.confidence("raw")
    assert np.array_equal(summary.predicted, probs.argmax(1))
    assert np.all(np.abs(got - exact) <= 1 / (2 * summaries.CELLS) + 1e-12)
    assert np.array_equal(_uniform_bin(got), _uniform_bin(exact))
    assert np.all(got >= 1 / c)
    rows = summary.rows("raw")
    assert np.allclose(rows.sum(1), 1) and np.array_equal(rows.argmax(1), summary.predicted)


def test_confidences_on_a_bin_edge_stay_in_the_bin_below_and_uniform_rows_stay_uniform():
    # normalised float16 rows such as [0.8, 0.2] sit exactly on k/15; [0.5, 0.5] is uniform
    probs = np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5], [0.25, 0.75]], dtype=np.float16)
    summary = summaries.summarise(probs, 1.0)
    conf = summary.confidence("raw")
    assert list(_uniform_bin(conf)) == [12, 12, 8, 12]  # 0.8 = 12/15 is in bin 12 (1-based), as the exact value is
    assert conf[2] == 0.5 and summary.predicted[2] == 0  # a uniform row: the first class, at 1/C
    assert np.array_equal(summary.rows("raw")[2], [0.5, 0.5])


def test_the_ts_column_is_the_cell_of_the_temperature_scaled_confidence():
    rng = np.random.default_rng(1)
    probs = _stored(rng, 500, 4)
    T = 1.7
    summary = summaries.summarise(probs, T)
    tempered = softmax(np.log(probs.astype(np.float64)) / T, axis=1)
    expected = np.ceil(tempered.max(1) * summaries.CELLS - 1e-9)
    assert np.array_equal(summary.codes[:, 1], expected.astype(np.uint8))
    assert not np.array_equal(summary.codes[:, 0], summary.codes[:, 1])  # T != 1 moves confidences


def test_summary_scores_equal_the_full_rows_where_they_can_and_stay_within_half_a_cell_elsewhere():
    rng = np.random.default_rng(2)
    probs, labels = _stored(rng, 3000, 5), rng.integers(0, 5, 3000)
    whole = scores(probs, labels, 1.3)
    summary = summaries.scores(summaries.summarise(probs, 1.3), labels)
    assert summary["n"] == whole["n"] == 3000
    for variant in ("raw", "ts"):
        assert set(summary[variant]) == {s.id for s in summaries.SPECS}
        for metric in ("accuracy", "macro_f1"):
            assert summary[variant][metric] == whole[variant][metric]
        for metric in ("ece/uniform/15/l1", "mce/uniform/15/max", "mean_confidence", "smooth_ece"):  # each confidence moves <= 1/480, in its bin
            assert abs(summary[variant][metric] - whole[variant][metric]) <= 1 / (2 * summaries.CELLS)
        assert summary[variant]["ece/uniform/15/l1"] != whole[variant]["ece/uniform/15/l1"]  # a summary, not the rows


def test_sets_scored_together_score_as_each_alone():
    rng = np.random.default_rng(5)
    sets = [(summaries.summarise(_stored(rng, n, 4, sharpness), t), rng.integers(0, 4, n)) for n, sharpness, t in ((300, 3.0, 1.5), (120, 0.5, 0.7), (300, 1.0, 1.0))]
    together = summaries.scores_of_sets(sets)
    alone = [summaries.scores(s, y) for s, y in sets]
    assert [r["n"] for r in together] == [300, 120, 300]
    for t, a in zip(together, alone):
        for variant in summaries.VARIANTS:
            assert t[variant].keys() == a[variant].keys()
            np.testing.assert_allclose(list(t[variant].values()), list(a[variant].values()), rtol=0, atol=1e-12)
    assert alone[0]["raw"]["smooth_ece"] != alone[1]["raw"]["smooth_ece"] != alone[0]["ts"]["smooth_ece"]


@pytest.mark.parametrize(
    "spec",
    [
        metrics.MetricSpec("nll"),  # needs every class's probability
        metrics.MetricSpec("classwise_ece", "uniform", 15, "l1"),
        metrics.MetricSpec("ece", "quantile", 15, "l1"),  # orders confidences: a cell is one tie group
        metrics.MetricSpec("aurc"),
        metrics.MetricSpec("ece", "uniform", 7, "l1"),  # 7 bins: their edges are not cell edges
    ],
    ids=lambda s: s.id,
)
def test_metrics_a_summary_does_not_decide_are_refused(spec):
    rng = np.random.default_rng(3)
    summary = summaries.summarise(_stored(rng, 50, 3), 1.0)
    with pytest.raises(ValueError, match="keeps only the predicted class's confidence"):
        summaries.scores(summary, np.zeros(50, dtype=np.int64), [spec])
    assert summaries.decides(metrics.MetricSpec("ece", "uniform", 10, "l1"))


def test_packed_summaries_round_trip_including_ts_cells_below_the_raw_ones():
    rng = np.random.default_rng(4)
    probs = _stored(rng, 300, 3)
    arrays = {"clean/probs": probs, "clean/labels": rng.integers(0, 3, 300)}
    for T, severity in ((0.5, 1), (2.5, 2)):  # sharpening raises the TS cells, softening lowers them (mod 256 in the pack)
        s = summaries.summarise(_stored(rng, 300, 3), T)
        arrays[f"shift/char-swap@v2/{severity}/predicted"], arrays[f"shift/char-swap@v2/{severity}/confidence"] = s.predicted, s.codes
        arrays[f"shift/char-swap@v2/{severity}/labels"] = rng.integers(0, 3, 300)
    packed = entry_format.pack_predictions(arrays)
    again = entry_format.read_predictions(io.BytesIO(packed), "packed.npz")
    assert set(again) == set(arrays)
    for key, array in arrays.items():
        assert again[key].dtype == array.dtype and np.array_equal(again[key], array), key
    with pytest.raises(Exception, match="confidence cells must be"):
        entry_format.pack_predictions({**arrays, "shift/char-swap@v2/1/confidence": arrays["shift/char-swap@v2/1/confidence"].astype(np.int64)})


def test_a_corrupted_set_is_stored_as_a_summary_and_scored_from_it():
    rng = np.random.default_rng(5)
    shifts = {"char-swap@v2": {"hash": "a" * 12, "family": "corruption", "kind": "labelled"}}
    probs, labels = _stored(rng, 200, 3), rng.integers(0, 3, 200)
    arrays = {"clean/probs": _stored(rng, 100, 3), "clean/labels": rng.integers(0, 3, 100)}
    arrays |= {"shift/char-swap@v2/1/probs": probs, "shift/char-swap@v2/1/labels": labels}
    compact = entry_format.compact(arrays, 1.4, shifts)
    assert "shift/char-swap@v2/1/probs" not in compact and compact["shift/char-swap@v2/1/confidence"].dtype == np.uint8
    assert entry_format.compact(compact, 1.4, shifts).keys() == compact.keys()  # already compact: unchanged
    ids, sets = entry_format.score_predictions(compact, 1.4, shifts)
    expected = summaries.scores(summaries.summarise(probs, 1.4), labels)
    assert sets["char-swap@v2/1"]["stored"] == sets["pool/corruption"]["stored"] == "summary"
    assert "stored" not in sets["clean"]
    assert ids["summary"] == sorted(s.id for s in summaries.SPECS)
    assert sets["char-swap@v2/1"]["raw"] == [round(expected["raw"][m], entry_format.DECIMALS) for m in ids["summary"]]
    rows, y = entry_format.variant_rows(compact, "pool/corruption", shifts, 1.4, "ts")
    assert np.array_equal(y, labels) and np.array_equal(rows.argmax(1), probs.argmax(1))
    with pytest.raises(Exception, match="stored as per-row summaries"):
        entry_format.set_probs(compact, "char-swap@v2/1", shifts)
