"""The statistics of claims: sufficient statistics agree with the metrics, one draw per task is
shared by every unit, the seed correction, Holm, resolution, and the simulation that validates
the design (coverage near the nominal level, where a per-unit bootstrap under-covers)."""

from __future__ import annotations

import dataclasses
import shutil
import numpy as np
import pytest
from scipy.special import softmax

from cud_bench.metrics import METRICS, Predictions
from cud_bench.specs import MetricSpec
from leaderboard import inference
from leaderboard.inference import CLEAN_BLOCK, Segment, Setting, Unit, World


def _preds(rng: np.random.Generator, n: int = 120, c: int = 3, sharp: float = 2.0) -> Predictions:
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), labels] += 1.0
    return Predictions.of(softmax(sharp * logits, axis=1), labels)


@pytest.mark.parametrize("metric", ["accuracy", "nll", "brier", "mean_confidence", "ece/uniform/15/l1", "debiased_ce/uniform/15/l2sq"])
def test_sufficient_statistics_equal_the_metric_on_resampled_rows(metric):
    rng = np.random.default_rng(0)
    spec, preds = MetricSpec.from_id(metric), _preds(rng)
    clusters = rng.integers(0, 40, len(preds.labels))  # several rows per cluster, some clusters unused
    linear = inference.LINEAR.get(spec.name)
    counts = rng.integers(0, 3, (5, 40)).astype(float)
    got = linear.finish(np.asarray(counts @ linear.matrix(preds, spec, clusters, 40)), spec)
    for r in range(5):
        rows = np.repeat(np.arange(len(clusters)), counts[r, clusters].astype(int))
        assert got[r] == pytest.approx(METRICS.get(spec.name)(preds.take(rows), spec), abs=1e-12)


def _unit(task: str, label: str, a, b, rows: np.ndarray, seeds=(0, 1, 2), n_clean: int = 120) -> Unit:
    labels = a[0].labels
    return Unit(task, "board", label, seeds, (Segment(CLEAN_BLOCK, rows),), {CLEAN_BLOCK: n_clean},
                tuple(Predictions.of(p.probs[rows], labels[rows]) for p in a), tuple(Predictions.of(p.probs[rows], labels[rows]) for p in b))


def test_units_of_a_task_share_one_draw_so_a_duplicate_unit_adds_no_information():
    rng = np.random.default_rng(1)
    a, b = [_preds(rng) for _ in range(3)], [_preds(rng, sharp=4.0) for _ in range(3)]
    rows = np.arange(120)
    spec = MetricSpec.from_id("ece/uniform/15/l1")
    one = inference.bootstrap(spec, [_unit("t", "u", a, b, rows)], "mean", seed=3, n_resamples=400)
    twice = [_unit("t", "u", a, b, rows), _unit("t", "copy", a, b, rows)]
    shared = inference.bootstrap(spec, twice, "mean", seed=3, n_resamples=400)
    assert shared.se == pytest.approx(one.se) and shared.effect == pytest.approx(one.effect)
    naive = inference.bootstrap(spec, twice, "mean", seed=3, n_resamples=400, design="independent")
    assert naive.se < 0.85 * one.se  # independent draws treat the copy as new evidence
    same = [_unit(t, "u", a[:1] * 3, b[:1] * 3, rows) for t in ("t", "s")]  # seeds alike: only examples vary
    alone = inference.bootstrap(spec, same[:1], "mean", seed=3, n_resamples=400).se
    assert inference.bootstrap(spec, same, "mean", seed=3, n_resamples=400).se == pytest.approx(alone / np.sqrt(2), rel=0.15)


def test_the_seed_part_of_the_variance_is_unbiased():
    """Models that are right (or wrong) on every example: only seeds vary. The replicates' variance
    must be the usual s^2 / S, not (S - 1) / S of it as a plain bootstrap of S seeds gives."""
    n, seeds = 50, (0, 1, 2)
    labels = np.zeros(n, dtype=np.int64)
    right, wrong = np.tile([0.9, 0.1], (n, 1)), np.tile([0.1, 0.9], (n, 1))
    a = [Predictions.of(p, labels) for p in (right, right, wrong)]  # accuracies 1, 1, 0
    b = [Predictions.of(wrong, labels)] * 3
    unit = Unit("t", "g", "u", seeds, (Segment(CLEAN_BLOCK, np.arange(n)),), {CLEAN_BLOCK: n}, tuple(a), tuple(b))
    est = inference.bootstrap(MetricSpec("accuracy"), [unit], "mean", seed=0, n_resamples=4000)
    assert est.effect == pytest.approx(2 / 3)
    assert est.se == pytest.approx(np.std([1, 1, 0], ddof=1) / np.sqrt(3), rel=0.05)


def test_worst_takes_each_sides_worst_set_per_board():
    values = np.array([[[0.1, 0.3]], [[0.5, 0.2]], [[0.2, 0.1]]])  # 3 sets of one board: (units, R=1, sides)
    tasks, groups = ["t"] * 3, [("t", "g")] * 3
    assert inference.AGGREGATES.get("worst")(values, tasks, groups, False, 1.0)[0] == pytest.approx(0.5 - 0.3)
    assert inference.AGGREGATES.get("worst-difference")(values, tasks, groups, False, 1.0)[0] == pytest.approx(0.3)
    assert inference.AGGREGATES.get("mean")(values, tasks, groups, False, 1.0)[0] == pytest.approx(0.2 / 3)


def test_holm_sign_test_and_resolution():
    assert inference.holm([0.01, None, 0.04, 0.03]) == [pytest.approx(0.03), None, pytest.approx(0.06), pytest.approx(0.06)]
    wins, losses, p = inference.sign_test(-np.ones(27), -1.0)  # 27 of 27 pairs in the claimed direction
    assert (wins, losses) == (27, 0) and p < 1e-7
    assert inference.decide(-0.01, 0.02, 0.03, "lower") == ("inconclusive", "below resolution")
    assert inference.decide(-0.01, 0.05, 0.03, "lower") == ("inconclusive", "")
    assert inference.decide(-0.05, -0.01, 0.03, "lower") == ("holds", "")
    assert inference.decide(0.01, 0.05, 0.03, "lower") == ("fails", "")
    assert inference.minimum_detectable_effect(1.0, 0.95) == pytest.approx(1.959964 + 0.841621, abs=1e-5)


SMALL = World(n_tasks=4, n_boards=2, n_clean=200, n_corrupt=30, n_corruptions=3, n_severities=2, n_domain=100)


def test_simulation_covers_the_truth_where_a_per_unit_bootstrap_does_not():
    """The acceptance test of the design, small: 60 simulated benchmarks with no true difference."""
    kinds = ("clean/mean", "pool/mean", "corruption/mean", "corruption/mean/independent", "corruption/worst")
    setting = Setting("ci-null", SMALL, kinds=kinds, metrics=("accuracy", "ece/uniform/15/l1"))
    out = {(o.metric, o.kind): o for o in inference.simulate(setting, 60, seed=0, n_resamples=300)}
    for metric in ("accuracy", "ece/uniform/15/l1"):
        for kind in ("clean/mean", "pool/mean", "corruption/mean", "corruption/worst"):
            o = out[metric, kind]
            assert o.truth == 0.0 and 0.85 <= o.coverage <= 1.0 and o.holds <= 0.1, o
        hierarchical, naive = out[metric, "corruption/mean"], out[metric, "corruption/mean/independent"]
        assert naive.coverage <= 0.9 and naive.coverage < hierarchical.coverage, (naive, hierarchical)
        assert naive.mean_se < 0.8 * hierarchical.mean_se and naive.mean_se / naive.sd_effect < 0.75  # it ignores what units share
        assert 0.75 < hierarchical.mean_se / hierarchical.sd_effect < 1.3  # the design's SE is the estimate's real spread
    assert min(out[m, "corruption/mean/independent"].coverage for m in ("accuracy", "ece/uniform/15/l1")) <= 0.85


def test_simulation_detects_a_known_difference():
    """A true pooled ECE difference of 5 points is detected; the binned plug-in ECE shrinks it
    (both methods' ECE carry an upward small-sample bias, the better calibrated one more)."""
    world = dataclasses.replace(SMALL, n_corrupt=150)
    setting = Setting("ci-effect", world, ece_delta=-0.05, kinds=("pool/mean",), metrics=("ece/uniform/15/l1",))
    (o,) = inference.simulate(setting, 30, seed=1, n_resamples=300)
    assert o.truth == pytest.approx(-0.05, abs=0.002)
    assert o.holds >= 0.8 and o.fails == 0.0, o
    assert -0.05 < o.mean_effect < -0.02, o


def test_simulate_command_refuses_unknown_settings_and_metrics_without_a_population_value(capsys):
    from cud_bench.cli import main

    assert main(["simulate", "--settings", "nothing"]) == 2 and "no setting matches" in capsys.readouterr().err
    assert main(["simulate", "--metrics", "aurc"]) == 2 and "has no weighted form" in capsys.readouterr().err


def test_simulation_tables_name_the_size_that_reaches_power():
    outcomes = [
        inference.Outcome(f"ece-2pt{seeds}-n{n}", "ece/uniform/15/l1", "pool/mean", 10, -0.02, 0.95, power, 0.0, -0.02, 0.01, 0.01, 0.03, 1.0)
        for seeds, rows in (("", ((30, 0.3), (100, 0.7), (300, 0.85), (500, 0.99))), ("-s5", ((300, 0.75), (500, 0.9))))
        for n, power in rows
    ]
    text = inference.simulation_markdown(outcomes)
    three, five = text.split("5 training seeds")
    assert "| -2pt | 0.300 | 0.700 | 0.850 | 0.990 |" in three and "3 training seeds" in three
    assert "Smallest n per corruption with power >= 0.8 for a 2-point difference (ece/uniform/15/l1, 3 seeds): 300" in three
    assert "| -2pt | 0.750 | 0.900 |" in five
    assert "Smallest n per corruption with power >= 0.8 for a 2-point difference (ece/uniform/15/l1, 5 seeds): 500" in five


def test_power_settings_simulate_the_named_number_of_seeds():
    settings = {s.name: s for s in inference.select_settings(["ece-2pt*-n300"])}
    assert settings["ece-2pt-n300"].world.n_seeds == 3 and settings["ece-2pt-s5-n300"].world.n_seeds == 5


def test_simulation_table_separates_misses_from_monte_carlo_noise():
    def outcome(coverage: float, holds: float, n: int = 500) -> inference.Outcome:
        return inference.Outcome("null-n30", "accuracy", "clean/mean", n, 0.0, coverage, holds, 0.0, 0.0, 0.01, 0.01, 0.03, 1.0)

    assert inference.within_target(outcome(0.95, 0.02)) == "yes"
    assert inference.within_target(outcome(0.924, 0.03)) == "within MC error"  # margin at 500 is about 2.3 points
    assert inference.within_target(outcome(0.90, 0.02)) == "**no**"
    assert inference.within_target(outcome(0.95, 0.045)) == "**no**"


def test_simulate_combines_earlier_runs_into_one_table(tmp_path, capsys):
    from cud_bench.cli import main

    a, b = (inference.Outcome(f"null-n{n}", "accuracy", "clean/mean", 10, 0.0, 0.9, 0.1, 0.0, 0.0, 0.01, 0.01, 0.03, 1.0) for n in (30, 300))
    (tmp_path / "a.json").write_text(inference.simulation_json([a], seed=1))
    (tmp_path / "b.json").write_text(inference.simulation_json([b], seed=2))
    assert main(["simulate", "--combine", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "all")]) == 0
    text = (tmp_path / "all.md").read_text()
    assert "| null-n30 |" in text and "| null-n300 |" in text
    (tmp_path / "bad.json").write_text("{}")
    assert main(["simulate", "--combine", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")]) == 2
    assert "not a simulation result" in capsys.readouterr().err


def _entry(task, method, seed, ece, accuracy=0.5):
    cell = {"task": task, "student": "mlp-l3", "protocol": "cross-fit", "method": method, "seed": seed}
    return {"cell": cell, "metrics": {"classification": ["accuracy", "ece/uniform/15/l1"]}, "sets": {"clean": {"raw": [accuracy, ece]}}}


def test_seed_spread_of_a_release_pairs_the_two_methods_by_seed():
    entries = [_entry("a", "cud", s, v) for s, v in enumerate((0.1, 0.2, 0.3))] + [_entry("a", "kd", s, 0.1) for s in range(3)]
    entries += [_entry("b", "cud", s, v) for s, v in enumerate((0.0, 0.2))] + [_entry("b", "kd", s, v) for s, v in enumerate((0.0, 0.0, 9.0))]
    entries += [_entry("a", "ce", s, 5.0 * s) for s in range(3)] + [_entry("c", "kd", s, 1.0 * s) for s in range(3)]  # no pair
    spread = inference.release_seed_spread(entries, "ece/uniform/15/l1")
    # group a: cud - kd = (0, .1, .2), SD .1, kd alone 0; group b: seeds 0 and 1 only, (0, .2), SD .1414, kd alone 0
    assert spread.groups == 2
    assert spread.paired == pytest.approx(np.sqrt((0.1**2 + 0.02) / 2)) and spread.alone == pytest.approx(0.0, abs=1e-12)


def test_simulated_seed_spread_grows_with_the_worlds_seed_effects():
    world = World(n_tasks=3)
    none = dataclasses.replace(world, seed_bias_sd=0.0, seed_logtemp_sd=0.0)
    with_effects = inference.simulated_seed_spread(world, "ece/uniform/15/l1", 2, seed=0)
    without = inference.simulated_seed_spread(none, "ece/uniform/15/l1", 2, seed=0)
    assert with_effects.groups == without.groups == 2 * 3 * world.n_boards
    assert with_effects.paired > 2 * without.paired > 0


def test_seed_spread_command_compares_a_committed_release_with_the_simulator(capsys):
    from cud_bench.cli import main

    assert main(["simulate", "--seed-spread", "1.0", "--benchmarks", "1", "--metrics", "accuracy"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| accuracy |"))
    assert "(36 groups)" in row  # 9 tasks x 2 students x 2 protocols with cud and kd on 3 seeds
    assert main(["simulate", "--seed-spread", "9.9"]) == 2 and "unknown release" in capsys.readouterr().err


def test_seed_spread_reads_a_release_under_another_root(tmp_path, capsys):
    from cud_bench.cli import main
    from leaderboard.store import DEFAULT_ROOT

    args = ["simulate", "--seed-spread", "1.0", "--root", str(tmp_path), "--benchmarks", "1", "--metrics", "accuracy"]
    assert main(args) == 2 and str(tmp_path) in capsys.readouterr().err  # nothing there yet
    shutil.copytree(DEFAULT_ROOT / "1.0.0", tmp_path / "1.0.0", ignore=shutil.ignore_patterns("views"))
    assert main(args) == 0 and "release 1.0.0" in capsys.readouterr().out
