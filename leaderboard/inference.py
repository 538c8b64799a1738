"""The statistics of claims: one hierarchical bootstrap per claim, sign tests, Holm's correction,
resolution (minimum detectable effect), and the simulation that validates them.

**Design.** A claim compares side A with side B over *units* (one board and one set of one task).
Units are not independent: they share training seeds, test examples (both students, both
protocols, every corrupted copy of a text, nested subsets), so each claim is one bootstrap:

- per replicate, training **seeds** are drawn with replacement once, the same draw for every unit
  and both sides; with S seeds the plain cluster bootstrap under-states the seed variance by
  (S - 1)/S, so the seed part of each replicate is stretched by sqrt(S / (S - 1)) around the
  replicate's seed mean (a linear combination of per-seed metrics, so weights may be negative);
- within each **task**, test examples are drawn once per replicate as clusters of *blocks*
  shared by every unit of that task: block ``clean`` holds the clean test texts (a subset and a
  set whose rows map to clean texts count its draws from there, so nested subsets are counted
  once); a labelled shifted set without such rows is one cluster per position in a block of its
  shift family (every corruption of a task corrupts the same texts in the same order);
- a unit's metric on a replicate is computed on the resampled examples (per-cluster sufficient
  statistics times cluster counts, :data:`LINEAR`; other metrics through
  :data:`cud_bench.metrics.WEIGHTED` or one resample at a time);
- units are aggregated per task, then over tasks with equal weights (:data:`AGGREGATES`).

``worst`` is each side's worst set within a board (then the mean over a task's boards and over
tasks): the claim "A's worst ECE is lower than B's worst", as robustness benchmarks report a
worst case. The upward bias of a maximum of noisy estimates is alike for both sides and largely
cancels in the difference; the worst *difference* (``worst-difference``, kept for the
simulation) has a bias that never cancels and always favours "fails" (see ``cud-bench simulate``).

**Tests and verdicts.** The interval is the percentile interval of the replicates of A - B; the
two-sided p-value inverts it (:func:`cud_bench.metrics.difference_interval`). The minimum
detectable effect is MDE = (z_{1-alpha/2} + z_{0.8}) * SE, SE the replicates' standard deviation:
the true effect a two-sided test at the claim's level detects with power 0.8. An interval that
straddles zero and lies within [-MDE, +MDE] is "inconclusive (below resolution)". Holm's
step-down adjustment is applied over a family of p-values (a claims file: every claim with one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm

from cud_bench.metrics import METRICS, NLL_EPS, WEIGHTED, Predictions, _bin_edges, _bin_index, difference_interval
from cud_bench.registry import Registry
from cud_bench.specs import MetricSpec

POWER = 0.8  # the power at which the minimum detectable effect is defined
CLEAN_BLOCK = "clean"
BELOW_RESOLUTION = "below resolution"


# -- units and the bootstrap -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Segment:
    """Consecutive rows of a unit whose examples are clusters ``clusters`` (n_rows,) of ``block``."""

    block: str
    clusters: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Unit:
    """One comparison cell: a task's set scored by both sides on the same examples and seeds.

    ``a`` and ``b`` hold one :class:`Predictions` per seed (same rows, in ``segments`` order);
    ``blocks`` gives each block's number of clusters; ``group`` is what ``worst`` takes the
    worst set within (a board)."""

    task: str
    group: str
    label: str
    seeds: tuple[int, ...]
    segments: tuple[Segment, ...]
    blocks: dict[str, int]
    a: tuple[Predictions, ...]
    b: tuple[Predictions, ...]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A claim's effect A - B, its bootstrap replicates and what follows from them."""

    effect: float
    low: float
    high: float
    p_value: float
    se: float
    mde: float
    n_tasks: int
    n_seeds: int
    n_units: int
    n_dropped: int = 0  # replicates without a value (a small set drawn empty in every unit of a task)


def bootstrap(
    spec: MetricSpec,
    units: Sequence[Unit],
    aggregate: str,
    *,
    seed: int,
    n_resamples: int = 1000,
    level: float = 0.95,
    bad_sign: float = 1.0,
    design: str = "hierarchical",
) -> Estimate:
    """The hierarchical bootstrap of one claim (see the module docstring).

    ``bad_sign`` is +1 when a larger A - B is against the claim (used by ``worst-difference``).
    ``design="independent"`` draws examples and seeds independently for every unit, without the
    seed correction: the design this module replaces, kept to show in simulation that it
    under-covers.
    """
    if not units:
        raise ValueError("no unit to bootstrap")
    higher = spec.name in HIGHER_IS_BETTER
    universe = sorted({s for u in units for s in u.seeds})
    rng = np.random.default_rng([seed, 0])
    seed_weights = rng.multinomial(len(universe), [1 / len(universe)] * len(universe), size=n_resamples) / len(universe)
    draws: dict[tuple[str, str, int], np.ndarray] = {}
    values, points = [], []
    for i, unit in enumerate(units):
        key = unit.task if design == "hierarchical" else f"{unit.task}#{i}"
        counts = {}
        for block, size in unit.blocks.items():
            if (key, block, size) not in draws:
                task_rng = np.random.default_rng([seed, 1, _stable(key), _stable(block), size])
                draws[key, block, size] = task_rng.multinomial(size, [1 / size] * size, size=n_resamples).astype(np.float64)
            counts[block] = draws[key, block, size]
        if design == "hierarchical":
            weights, correct = seed_weights[:, [universe.index(s) for s in unit.seeds]], True
        else:
            own = np.random.default_rng([seed, 2, i])
            k = len(unit.seeds)
            weights, correct = own.multinomial(k, [1 / k] * k, size=n_resamples) / k, False
        sides = [_seed_combined(_per_seed_replicates(spec, p, unit.segments, counts), weights, correct) for p in (unit.a, unit.b)]
        values.append(np.stack(sides, axis=1))
        points.append(np.array([[np.mean([evaluate(spec, p) for p in preds]) for preds in (unit.a, unit.b)]]))
    tasks, groups = [u.task for u in units], [(u.task, u.group) for u in units]
    combine = AGGREGATES.get(aggregate)
    replicates = combine(np.stack(values), tasks, groups, higher, bad_sign)
    effect = float(combine(np.stack(points), tasks, groups, higher, bad_sign)[0])
    kept = replicates[np.isfinite(replicates)]
    low, high, p = difference_interval(kept, level)
    se = float(np.std(kept, ddof=1))
    return Estimate(
        effect, low, high, p, se, minimum_detectable_effect(se, level),
        len(set(tasks)), len(universe), len(units), len(replicates) - len(kept),
    )


def minimum_detectable_effect(se: float, level: float, power: float = POWER) -> float:
    """(z_{1-alpha/2} + z_power) * se: the true effect a two-sided test at ``level`` detects with ``power``."""
    return float((norm.ppf((1 + level) / 2) + norm.ppf(power)) * se)


def _stable(text: str) -> int:
    """A process-independent integer for a name (``hash`` of a str is salted per process)."""
    return int.from_bytes(text.encode()[:16].ljust(16, b"\0"), "little") ^ len(text)


def _per_seed_replicates(spec: MetricSpec, preds: Sequence[Predictions], segments: Sequence[Segment], counts: dict) -> np.ndarray:
    """(seeds, R) the metric of each seed's predictions on every replicate's resampled examples."""
    linear = LINEAR.get(spec.name) if spec.name in LINEAR else None
    if linear is not None and linear.fits(spec):
        out = []
        for p in preds:
            sums, at = 0.0, 0
            for seg in segments:
                rows = np.arange(at, at + len(seg.clusters))
                at += len(seg.clusters)
                stats = linear.sums(p.take(rows), spec, seg.clusters, counts[seg.block].shape[1])
                sums = sums + counts[seg.block] @ stats
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(linear.finish(sums, spec))
        return np.stack(out)
    row_counts = np.concatenate([counts[seg.block][:, seg.clusters] for seg in segments], axis=1)
    weighted = WEIGHTED.get(spec.name) if spec.name in WEIGHTED else None
    if weighted is not None and weighted.fits(spec):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.stack([weighted(p, spec, row_counts) for p in preds])
    metric, n = METRICS.get(spec.name), row_counts.shape[1]
    out = np.full((len(preds), len(row_counts)), np.nan)
    for r, c in enumerate(row_counts.astype(np.int64)):
        if c.sum():
            rows = np.repeat(np.arange(n), c)
            out[:, r] = [metric(p.take(rows), spec) for p in preds]
    return out


def _seed_combined(per_seed: np.ndarray, weights: np.ndarray, correct: bool) -> np.ndarray:
    """(R,) the seed-weighted metric; with ``correct`` the seed deviation is stretched by sqrt(S/(S-1))."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.where(total > 0, (weights * per_seed.T).sum(axis=1) / total, np.nan)
    s = per_seed.shape[0]
    if not correct or s < 2:
        return plain
    centre = per_seed.mean(axis=0)
    return centre + np.sqrt(s / (s - 1)) * (plain - centre)


def evaluate(spec: MetricSpec, preds: Predictions) -> float:
    return float(METRICS.get(spec.name)(preds, spec))


# -- aggregates: units (U, R, 2) -> the difference A - B (R,) --------------------------

HIGHER_IS_BETTER = ("accuracy", "macro_f1", "ood_auroc")
Aggregate = Callable[[np.ndarray, list, list, bool, float], np.ndarray]
AGGREGATES: Registry[Aggregate] = Registry("aggregate")


def _by(keys: list, values: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> tuple[list, np.ndarray]:
    """Reduce ``values`` (U, ...) over the units of each key (in first-seen order)."""
    order = list(dict.fromkeys(keys))
    with _quiet():
        return order, np.stack([reduce(values[[i for i, k in enumerate(keys) if k == key]]) for key in order])


@contextlib.contextmanager
def _quiet() -> Any:
    """All-NaN slices (a set drawn empty) give NaN, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _task_mean(per_group: np.ndarray, groups: list) -> np.ndarray:
    """Mean over each task's groups, then over tasks (equal weights)."""
    _, per_task = _by([g[0] for g in groups], per_group, lambda v: np.nanmean(v, axis=0))
    with _quiet():
        return np.nanmean(per_task, axis=0)


@AGGREGATES.register("mean")
def _mean(values: np.ndarray, tasks: list, groups: list, higher: bool, bad_sign: float) -> np.ndarray:
    _, per_task = _by(tasks, values, lambda v: np.nanmean(v, axis=0))
    with _quiet():
        both = np.nanmean(per_task, axis=0)
    return both[:, 0] - both[:, 1]


@AGGREGATES.register("worst")
def _worst(values: np.ndarray, tasks: list, groups: list, higher: bool, bad_sign: float) -> np.ndarray:
    reduce = (lambda v: np.nanmin(v, axis=0)) if higher else (lambda v: np.nanmax(v, axis=0))
    keys, per_group = _by(groups, values, reduce)
    both = _task_mean(per_group, keys)
    return both[:, 0] - both[:, 1]


@AGGREGATES.register("worst-difference")
def _worst_difference(values: np.ndarray, tasks: list, groups: list, higher: bool, bad_sign: float) -> np.ndarray:
    d = values[..., 0] - values[..., 1]
    keys, per_group = _by(groups, d, lambda v: bad_sign * np.nanmax(bad_sign * v, axis=0))
    return _task_mean(per_group, keys)


# -- per-cluster sufficient statistics: a metric on R resamples from (R, clusters) counts --


@dataclasses.dataclass(frozen=True)
class Linear:
    """A metric that is a function of sums over examples: ``sums`` gives (clusters, k) per-cluster
    sums of k statistics, ``finish`` the metric (R,) from their count-weighted totals (R, k).
    Must equal the metric of :data:`cud_bench.metrics.METRICS` on the resampled rows (tested)."""

    sums: Callable[[Predictions, MetricSpec, np.ndarray, int], np.ndarray]
    finish: Callable[[np.ndarray, MetricSpec], np.ndarray]
    fits: Callable[[MetricSpec], bool] = lambda spec: True


def _cluster_sums(columns: Sequence[np.ndarray], clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    return np.stack([np.bincount(clusters, weights=c, minlength=n_clusters) for c in columns], axis=1)


def _mean_linear(per_example: Callable[[Predictions], np.ndarray]) -> Linear:
    return Linear(
        lambda p, spec, clusters, k: _cluster_sums([np.ones(len(clusters)), per_example(p)], clusters, k),
        lambda s, spec: s[:, 1] / s[:, 0],
    )


def _ece_sums(p: Predictions, spec: MetricSpec, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """(clusters, 3 * n_bins): count, summed confidence and hits per uniform bin."""
    index = clusters * spec.n_bins + _bin_index(p.confidence, _bin_edges(spec.n_bins, "uniform"))
    size = n_clusters * spec.n_bins
    cols = [np.bincount(index, weights=w, minlength=size).reshape(n_clusters, spec.n_bins) for w in (None, p.confidence, p.correct)]
    return np.concatenate(cols, axis=1)


def _ece_finish(s: np.ndarray, spec: MetricSpec) -> np.ndarray:
    b = spec.n_bins
    return np.abs(s[:, 2 * b :] - s[:, b : 2 * b]).sum(axis=1) / s[:, :b].sum(axis=1)


LINEAR: Registry[Linear] = Registry("linear metric")
LINEAR.register("accuracy", _mean_linear(lambda p: p.correct.astype(np.float64)))
LINEAR.register("nll", _mean_linear(lambda p: -np.log(np.maximum(p.true_prob, NLL_EPS))))
LINEAR.register("brier", _mean_linear(lambda p: p.sq_norm - 2 * p.true_prob + 1))
LINEAR.register("mean_confidence", _mean_linear(lambda p: p.confidence))
LINEAR.register("ece", Linear(_ece_sums, _ece_finish, lambda spec: spec.binning == "uniform" and spec.norm == "l1"))


# -- tests on stored numbers, corrections, verdicts --------------------------------------


def sign_test(differences: np.ndarray, claimed_sign: float) -> tuple[int, int, float]:
    """(wins, losses, two-sided exact binomial p) of ``claimed_sign * differences``; ties are dropped."""
    d = claimed_sign * np.asarray(differences, dtype=np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    return wins, losses, float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values over the family of the given p-values (None: not in it)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def decide(low: float, high: float, mde: float, direction: str) -> tuple[str, str]:
    """(status, resolution): holds / fails when the interval lies on one side of zero, else
    inconclusive, with resolution "below resolution" when the interval lies within [-MDE, +MDE]."""
    claimed = high < 0 if direction == "lower" else low > 0
    opposite = low > 0 if direction == "lower" else high < 0
    if claimed or opposite:
        return ("holds" if claimed else "fails"), ""
    return "inconclusive", BELOW_RESOLUTION if -mde <= low and high <= mde else ""


# -- clusters of a release's sets -----------------------------------------------------


def segments_of(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> tuple[tuple[Segment, ...], dict[str, int]]:
    """The clusters of a set's rows and the size of every block they belong to.

    Clean rows are the clean test texts (block ``clean``); a subset's rows, and a labelled set's
    rows when its predictions map them to clean texts (``shift/<set>/rows``), are clean texts
    too; other labelled sets are one cluster per position in their family's block (every
    corruption of a task corrupts the same texts in the same order; in other families grouping
    positions is only more cautious). A pool is its sets' segments in pool order.
    """
    from leaderboard import entry as entry_format

    head, _, rest = set_id.partition("/")
    n_clean = len(arrays["clean/labels"])
    if head == entry_format.CLEAN:
        return (Segment(CLEAN_BLOCK, np.arange(n_clean)),), {CLEAN_BLOCK: n_clean}
    if head == entry_format.POOL:
        segments, blocks = (), {}
        for part in entry_format.set_ids_of_family(arrays, rest, shifts):
            more, sizes = segments_of(arrays, part, shifts)
            segments, blocks = segments + more, {**blocks, **sizes}
        return segments, blocks
    rows = arrays.get(f"shift/{set_id}/rows")
    if rows is not None:
        return (Segment(CLEAN_BLOCK, np.asarray(rows, dtype=np.int64)),), {CLEAN_BLOCK: n_clean}
    family = shifts[head]["family"]
    size = max(len(arrays[f"shift/{s}/labels"]) for s in entry_format.set_ids_of_family(arrays, family, shifts))
    block = f"family:{family}"
    return (Segment(block, np.arange(len(arrays[f"shift/{set_id}/labels"]))),), {block: size}
