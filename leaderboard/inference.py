"""The statistics of claims: one hierarchical bootstrap per claim, sign tests, Holm's correction,
resolution (minimum detectable effect), and the simulation that validates them.

**Design.** A claim compares side A with side B over *units* (one board and one set of one task).
Units are not independent: they share training seeds, test examples (both students, both
protocols, every corrupted copy of a text, nested subsets), so each claim is one bootstrap:

- per replicate, training **seeds** are drawn with replacement once per task, the same draw for
  every unit of the task and both sides (they share the seed's teacher; another task's seed is
  another training run, so tasks draw independently and the seed spread is estimated with
  T (S - 1) degrees of freedom rather than S - 1);
- within each **task**, test examples are drawn once per replicate as clusters of *blocks*
  shared by every unit of that task: block ``clean`` holds the clean test texts (a subset and a
  set whose rows map to clean texts count its draws from there, so nested subsets are counted
  once); a labelled shifted set without such rows is one cluster per position in a block of its
  shift family (every corruption of a task corrupts the same texts in the same order);
- a unit's metric on a replicate is computed on the resampled examples (per-cluster sufficient
  statistics times cluster counts, :data:`LINEAR`; other metrics through
  :data:`cud_bench.metrics.WEIGHTED` or one resample at a time);
- units are aggregated per task, then over tasks with equal weights (:data:`AGGREGATES`);
- seeds and texts are crossed, so drawing both counts their interaction twice and S seeds
  under-state the seed spread: the replicates are rescaled to the variance of the crossed design
  and stretched by t/z quantiles with Satterthwaite's degrees of freedom (:func:`estimate`).

``worst`` is each side's worst set within a board (then the mean over a task's boards and over
tasks): the claim "A's worst ECE is lower than B's worst", as robustness benchmarks report a
worst case. The upward bias of a maximum of noisy estimates is alike for both sides and largely
cancels in the difference; the worst *difference* (``worst-difference``, kept for the
simulation) has a bias that never cancels and always favours "fails" (see ``cud-bench simulate``).

**Tests and verdicts.** The interval is the percentile interval of the (rescaled) replicates of
A - B; the two-sided p-value inverts it (:func:`cud_bench.metrics.difference_interval`). The
minimum detectable effect is MDE = (q_{1-alpha/2} + q_{0.8}) * SE, SE the design's standard
error and q the t quantiles of its degrees of freedom (about z: 1.96 + 0.84): the true effect a
two-sided test at the claim's level detects with power 0.8. An interval that
straddles zero and lies within [-MDE, +MDE] is "inconclusive (below resolution)". Holm's
step-down adjustment is applied over a family of p-values (a claims file: every claim with one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import brentq
from scipy.stats import binomtest, norm
from scipy.stats import t as t_dist

from cud_bench.errors import CudBenchError
from cud_bench.metrics import METRICS, NLL_EPS, WEIGHTED, Predictions, _bin_edges, _bin_index, _debiased_squared, difference_interval
from cud_bench.registry import Registry
from cud_bench.specs import MetricSpec
from leaderboard.stats import HIGHER_IS_BETTER

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
    """The hierarchical bootstrap of one claim (see the module docstring): :func:`replicates`,
    then :func:`estimate`. ``bad_sign`` is +1 when a larger A - B is against the claim."""
    return estimate(replicates(spec, units, seed=seed, n_resamples=n_resamples, design=design), aggregate, level=level, bad_sign=bad_sign)


@dataclasses.dataclass(frozen=True, eq=False)
class Replicates:
    """Every unit's side values on the bootstrap replicates, seed by seed.

    ``per_seed`` (units, 2, S, R) is each seed's metric on each replicate's examples (NaN for a
    seed the unit lacks), ``at_data`` (units, 2, S) on the data; ``weights`` (units, R, S) the
    plain seed draws of each unit's task; with ``independent`` every unit has its own draws and ``values`` (units, R, 2)
    holds the combined replicates of that design."""

    spec: MetricSpec
    per_seed: np.ndarray
    at_data: np.ndarray
    weights: np.ndarray
    tasks: list[str]
    groups: list[tuple[str, str]]
    independent: np.ndarray | None = None

    @property
    def n_seeds(self) -> int:
        return self.weights.shape[2]

    @property
    def points(self) -> np.ndarray:
        """(units, 1, 2) each side's metric averaged over the unit's seeds, on the data."""
        with _quiet():
            return np.nanmean(self.at_data, axis=2)[:, None, :]


def replicates(spec: MetricSpec, units: Sequence[Unit], *, seed: int, n_resamples: int = 1000, design: str = "hierarchical") -> Replicates:
    """Both sides' metric on each unit and seed for ``n_resamples`` replicates of the design.

    ``design="independent"`` draws examples and seeds independently for every unit: the design
    this module replaces, kept to show in simulation that it under-covers.
    """
    if not units:
        raise ValueError("no unit to bootstrap")
    if design not in ("hierarchical", "independent"):
        raise ValueError(f"unknown bootstrap design {design!r}")
    universe = sorted({s for u in units for s in u.seeds})
    k = len(universe)
    by_task = {  # seeds are drawn per task: another task's seed is another training run
        task: np.random.default_rng([seed, 0, _stable(task)]).multinomial(k, [1 / k] * k, size=n_resamples) / k
        for task in dict.fromkeys(u.task for u in units)
    }
    seed_weights = np.stack([by_task[u.task] for u in units])
    if design == "independent":  # each unit resamples its own examples, as a bootstrap per unit does
        units = [_own_clusters(u) for u in units]
    draws: dict[tuple[str, str, int], np.ndarray] = {}
    counts = []  # per unit: {block: the key of its task's draw}
    for i, unit in enumerate(units):
        key = unit.task if design == "hierarchical" else f"{unit.task}#{i}"
        mine = {}
        for block, size in unit.blocks.items():
            if (key, block, size) not in draws:
                task_rng = np.random.default_rng([seed, 1, _stable(key), _stable(block), size])
                draws[key, block, size] = _draw(task_rng, size, n_resamples)
            mine[block] = (key, block, size)
        counts.append(mine)
    per_seed, points = _per_seed(spec, units, counts, draws)
    full = np.full((len(units), 2, len(universe), n_resamples), np.nan)
    at_data = np.full((len(units), 2, len(universe)), np.nan)
    for i, unit in enumerate(units):
        where = [universe.index(s) for s in unit.seeds]
        for side in (0, 1):
            full[i, side, where] = per_seed[i, side]
            at_data[i, side, where] = points[i, side]
    independent = None
    if design == "independent":
        independent = np.empty((len(units), n_resamples, 2))
        for i, unit in enumerate(units):
            k = len(unit.seeds)
            own = np.random.default_rng([seed, 2, i]).multinomial(k, [1 / k] * k, size=n_resamples) / k
            independent[i] = _weighted_seeds(np.stack([per_seed[i, 0], per_seed[i, 1]])[None], own[None])[0].T
    return Replicates(spec, full, at_data, seed_weights, [u.task for u in units], [(u.task, u.group) for u in units], independent)


def _weighted_seeds(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(units, 2, R) the seed-weighted mean of ``values`` (units, 2, S, R) under ``weights``
    (units, R, S), over the seeds present (not NaN); NaN where no drawn seed is present."""
    present = np.isfinite(values)
    w = np.where(present, np.swapaxes(weights, 1, 2)[:, None], 0.0)
    total = w.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.where(present, values, 0.0)).sum(axis=-2) / total, np.nan)


def _own_clusters(unit: Unit) -> Unit:
    """The unit with its clusters renumbered into one block of the clusters it uses."""
    pairs = np.concatenate([np.stack([np.full(len(seg.clusters), hash(seg.block) % 2**31), seg.clusters], axis=1) for seg in unit.segments])
    _, local = np.unique(pairs, axis=0, return_inverse=True)
    local = local.reshape(-1)
    return dataclasses.replace(unit, segments=(Segment("own", local),), blocks={"own": int(local.max()) + 1})


def estimate(reps: Replicates, aggregate: str, *, level: float = 0.95, bad_sign: float = 1.0, only: Sequence[int] | None = None) -> Estimate:
    """Aggregate units (all, or the indices ``only``) as ``aggregate`` says; interval, p, SE and MDE of A - B.

    Seeds and test texts are crossed (every seed is scored on the same texts). Drawing both
    counts their interaction twice (Owen 2007, the pigeonhole bootstrap): once in the spread of
    the seeds and again in the resampled texts; and S drawn seeds under-state the seed spread
    by (S - 1)/S. So the replicates drawing both are rescaled about their median to the variance
    V = V_seeds + V_texts - V_interaction, where V_seeds is the variance over seed draws on the
    data (stretched by S/(S - 1)), V_texts over text draws of the seed mean, and V_interaction
    = mean over seeds of the variance over text draws of (seed s alone - seed mean) / (S - 1).
    """
    pick = list(range(len(reps.tasks))) if only is None else list(only)
    tasks, groups = [reps.tasks[i] for i in pick], [reps.groups[i] for i in pick]
    combine, higher = AGGREGATES.get(aggregate), reps.spec.name in HIGHER_IS_BETTER

    def agg(values: np.ndarray) -> np.ndarray:  # (units, 2, R) -> (R,)
        return combine(np.moveaxis(values, 2, 1), tasks, groups, higher, bad_sign)

    effect = float(combine(reps.points[pick], tasks, groups, higher, bad_sign)[0])
    df = np.inf
    if reps.independent is not None:
        draws = combine(reps.independent[pick], tasks, groups, higher, bad_sign)
        target = float(np.nanvar(draws, ddof=1))
    else:
        per_seed, weights = reps.per_seed[pick], reps.weights[pick]
        draws = agg(_weighted_seeds(per_seed, weights))
        s = reps.n_seeds
        with _quiet():
            texts = agg(np.nanmean(per_seed, axis=2))
            if s > 1:
                at_data = np.broadcast_to(reps.at_data[pick][..., None], per_seed.shape)
                spread = agg(_weighted_seeds(at_data, weights))
                v_seeds = np.nanvar(spread, ddof=1) * s / (s - 1)
                alone = [agg(per_seed[:, :, k]) - texts for k in range(s)]
                v_inter = np.nanmean([np.nanvar(a, ddof=1) for a in alone]) / (s - 1)
            else:
                v_seeds = v_inter = 0.0
            target = max(v_seeds + np.nanvar(texts, ddof=1) - v_inter, v_seeds, 0.0)
            have = np.nanvar(draws, ddof=1)
        # the seed part is estimated from (S - 1) degrees of freedom per task: Satterthwaite's df
        df = target**2 * len(set(tasks)) * (s - 1) / v_seeds**2 if v_seeds > 0 else np.inf
        if have > 0 and np.isfinite(target):
            stretch = np.sqrt(target / have) * t_dist.ppf((1 + level) / 2, df) / norm.ppf((1 + level) / 2)
            centre = np.nanmedian(draws)
            draws = centre + (draws - centre) * stretch
    kept = draws[np.isfinite(draws)]
    low, high, p = difference_interval(kept, level)
    se = float(np.sqrt(target))
    return Estimate(
        effect, low, high, p, se, minimum_detectable_effect(se, level, df=df),
        len(set(tasks)), reps.n_seeds, len(pick), len(draws) - len(kept),
    )


def _draw(rng: np.random.Generator, size: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, size) how often each of ``size`` clusters is drawn in ``size`` draws with replacement."""
    flat = (np.arange(n_resamples)[:, None] * size + rng.integers(0, size, (n_resamples, size))).ravel()
    return np.bincount(flat, minlength=n_resamples * size).reshape(n_resamples, size).astype(np.float64)


def minimum_detectable_effect(se: float, level: float, power: float = POWER, df: float = np.inf) -> float:
    """(q_{1-alpha/2} + q_power) * se, q the t quantiles with ``df`` degrees of freedom (normal ones
    by default): the true effect a two-sided test at ``level`` detects with ``power``."""
    return float((t_dist.ppf((1 + level) / 2, df) + t_dist.ppf(power, df)) * se)


def _stable(text: str) -> int:
    """A process-independent integer for a name (``hash`` of a str is salted per process)."""
    return int.from_bytes(text.encode()[:16].ljust(16, b"\0"), "little") ^ len(text)


def _per_seed(spec: MetricSpec, units: Sequence[Unit], counts: list[dict], draws: dict) -> tuple[dict, dict]:
    """{(unit, side): (seeds, R)} each seed's metric on every replicate's resampled examples, and
    {(unit, side): (seeds,)} on the data.

    With a linear form, every unit, side and seed of a task shares one sparse product per block
    (draws (R, clusters) times the stacked per-cluster statistics); otherwise unit by unit."""
    linear = LINEAR.get(spec.name) if spec.name in LINEAR else None
    out: dict[tuple[int, int], np.ndarray] = {}
    points: dict[tuple[int, int], np.ndarray] = {}
    if linear is None or not linear.fits(spec):
        for i, unit in enumerate(units):
            blocks = {block: draws[key] for block, key in counts[i].items()}
            for side, preds in enumerate((unit.a, unit.b)):
                out[i, side] = _unit_replicates(spec, preds, unit.segments, blocks)
                points[i, side] = np.array([evaluate(spec, p) for p in preds])
        return out, points
    jobs: dict[tuple, list] = {}  # (task, block, size) -> [(slot, cluster, column, value, width)]
    totals: dict[tuple[int, int, int], np.ndarray] = {}
    for i, unit in enumerate(units):
        for side, preds in enumerate((unit.a, unit.b)):
            for j, p in enumerate(preds):
                example, col, value, width = linear.entries(p, spec)
                totals[i, side, j] = np.bincount(col, weights=value, minlength=width)
                at = 0
                for seg in unit.segments:
                    keep = (example >= at) & (example < at + len(seg.clusters))
                    cluster = seg.clusters[example[keep] - at]
                    at += len(seg.clusters)
                    jobs.setdefault(counts[i][seg.block], []).append(((i, side, j), cluster, col[keep], value[keep], width))
    remaining = {}  # segments still to add per slot; a slot is finished when it reaches 0
    for items in jobs.values():
        for item in items:
            remaining[item[0]] = remaining.get(item[0], 0) + 1
    sums: dict[tuple[int, int, int], np.ndarray] = {}
    done: dict[tuple[int, int, int], np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, every in jobs.items():
            for start in range(0, len(every), _CHUNK):  # products of at most _CHUNK statistics blocks
                items = every[start : start + _CHUNK]
                offsets = np.cumsum([0] + [item[4] for item in items])
                rows = np.concatenate([it[1] for it in items])
                cols = np.concatenate([it[2] + o for it, o in zip(items, offsets)])
                stats = sparse.csc_matrix((np.concatenate([it[3] for it in items]), (rows, cols)), shape=(key[2], offsets[-1]))
                if stats.nnz > 0.02 * stats.shape[0] * stats.shape[1]:  # dense products are faster than sparse ones here
                    stats = stats.toarray()
                product = np.asarray(draws[key] @ stats)
                whole = [n for n, it in enumerate(items) if remaining[it[0]] == 1 and it[0] not in sums]
                if whole and len({items[n][4] for n in whole}) == 1:  # finish these slots at once: (R, slots, k)
                    width = items[whole[0]][4]
                    block = np.stack([product[:, offsets[n] : offsets[n] + width] for n in whole], axis=1)
                    for n, value in zip(whole, np.moveaxis(linear.finish(block, spec), 1, 0)):
                        done[items[n][0]], remaining[items[n][0]] = value, 0
                for n, (slot, *_) in enumerate(items):
                    if remaining[slot] == 0:
                        continue
                    part = product[:, offsets[n] : offsets[n + 1]]
                    sums[slot] = sums[slot] + part if slot in sums else part
                    remaining[slot] -= 1
                    if remaining[slot] == 0:
                        done[slot] = linear.finish(sums.pop(slot), spec)
        for i, unit in enumerate(units):
            for side, preds in enumerate((unit.a, unit.b)):
                out[i, side] = np.stack([done[i, side, j] for j in range(len(preds))])
                points[i, side] = np.array([float(linear.finish(totals[i, side, j], spec)) for j in range(len(preds))])
    return out, points


_CHUNK = 256


def _unit_replicates(spec: MetricSpec, preds: Sequence[Predictions], segments: Sequence[Segment], counts: dict) -> np.ndarray:
    """(seeds, R) for a metric without a linear form: its weighted form, or one resample at a time."""
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


def evaluate(spec: MetricSpec, preds: Predictions) -> float:
    return float(METRICS.get(spec.name)(preds, spec))


# -- aggregates: units (U, R, 2) -> the difference A - B (R,) --------------------------

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
    """A metric that is a function of k sums over examples. ``entries`` gives, for predictions of
    n examples, the non-zero terms (example, column in [0, k), value) and k; ``finish`` gives
    the metric (R,) from the count-weighted column totals (R, k). Must equal the metric of
    :data:`cud_bench.metrics.METRICS` on the resampled rows (tested)."""

    entries: Callable[[Predictions, MetricSpec], tuple[np.ndarray, np.ndarray, np.ndarray, int]]
    finish: Callable[[np.ndarray, MetricSpec], np.ndarray]
    fits: Callable[[MetricSpec], bool] = lambda spec: True

    def matrix(self, preds: Predictions, spec: MetricSpec, clusters: np.ndarray, n_clusters: int) -> sparse.csr_matrix:
        """(n_clusters, k) the statistics summed per cluster (row i of ``preds`` is in ``clusters[i]``)."""
        example, col, value, k = self.entries(preds, spec)
        return sparse.csr_matrix((value, (clusters[example], col)), shape=(n_clusters, k))


def _mean_linear(per_example: Callable[[Predictions], np.ndarray]) -> Linear:
    def entries(p: Predictions, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        n = len(p.labels)
        return np.tile(np.arange(n), 2), np.repeat([0, 1], n), np.concatenate([np.ones(n), per_example(p)]), 2

    return Linear(entries, lambda s, spec: s[..., 1] / s[..., 0])


def _ece_entries(p: Predictions, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Count, summed confidence and hits per uniform bin: columns [0, b), [b, 2b), [2b, 3b)."""
    b, n = spec.n_bins, len(p.labels)
    index = _bin_index(p.confidence, _bin_edges(b, "uniform"))
    cols = np.concatenate([index, b + index, 2 * b + index])
    return np.tile(np.arange(n), 3), cols, np.concatenate([np.ones(n), p.confidence, p.correct.astype(np.float64)]), 3 * b


def _ece_finish(s: np.ndarray, spec: MetricSpec) -> np.ndarray:
    b = spec.n_bins
    return np.abs(s[..., 2 * b :] - s[..., b : 2 * b]).sum(axis=-1) / s[..., :b].sum(axis=-1)


LINEAR: Registry[Linear] = Registry("linear metric")
LINEAR.register("accuracy", _mean_linear(lambda p: p.correct.astype(np.float64)))
LINEAR.register("nll", _mean_linear(lambda p: -np.log(np.maximum(p.true_prob, NLL_EPS))))
LINEAR.register("brier", _mean_linear(lambda p: p.sq_norm - 2 * p.true_prob + 1))
LINEAR.register("mean_confidence", _mean_linear(lambda p: p.confidence))
LINEAR.register("ece", Linear(_ece_entries, _ece_finish, lambda spec: spec.binning == "uniform" and spec.norm == "l1"))
# Uniform bins only: equal-mass edges move with every resample, so they are not sums over examples.
LINEAR.register("debiased_ce", Linear(
    _ece_entries, lambda s, spec: _debiased_squared(*np.split(s, 3, axis=-1)), lambda spec: spec.binning == "uniform" and spec.norm == "l2sq",
))


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


# -- simulation: synthetic benchmarks with a known truth ---------------------------------
#
# A simulated benchmark has the cpu suite's shape: tasks x boards (students) x seeds x two
# methods, every model scored on the same texts. A text has a true log-odds L (label 1 with
# probability sigmoid(L), drawn once); a model's logit for it is
#     scale_m * exp(logtemp_s) * (L + e) + bias_s
# with per-seed random effects (bias, log-temperature) and example noise e, half of it shared by
# both methods of a seed (they share initialisation and batch order). A corrupted copy of text i
# (corruption k, severity v) keeps its label, has log-odds shrunk by severity plus a copy-level
# perturbation shared by every model, and the model's own noise for text i: copies of a text are
# correlated. Corruption texts are the first n clean texts (rows of the scored split); the
# ambiguous subsets are the clean texts with the smallest |L| (nested); the domain sets are other
# texts. The truth of a metric is its population value (expected labels over a large sample),
# averaged over seed effects by Gauss-Hermite quadrature, then aggregated as the claim aggregates.


@dataclasses.dataclass(frozen=True)
class World:
    """The generator's sizes and variances; defaults are the cpu suite's sizes."""

    n_tasks: int = 9
    n_seeds: int = 3
    n_boards: int = 2  # students per task, scored on the same texts
    n_clean: int = 500
    n_corrupt: int = 30  # texts per corruption x severity
    n_corruptions: int = 10
    n_severities: int = 5
    n_domain: int = 500  # texts per domain set (two sets)
    subsets: tuple[float, ...] = (0.3, 0.2)  # nested ambiguous subsets: shares of clean texts
    logit_sd: tuple[float, ...] = (1.5, 2.0, 2.5)  # task t has true log-odds sd logit_sd[t % 3]
    seed_bias_sd: float = 0.3
    seed_logtemp_sd: float = 0.3
    example_sd: float = 1.0
    shared: float = 0.5  # share of the example noise variance common to both methods
    copy_sd: float = 0.15  # a corrupted copy's own perturbation (grows with the corruption index)
    copy_model_sd: float = 0.15
    scale_b: float = 1.4  # method B is over-confident


@dataclasses.dataclass(frozen=True)
class Setting:
    """One simulated condition: the true difference A - B and which claim kinds to evaluate."""

    name: str
    world: World = World()
    ece_delta: float = 0.0  # true pooled-corruption ECE difference A - B (negative: A better)
    example_sd_a: float | None = None  # A's example noise (less noise: more accurate); default B's
    kinds: tuple[str, ...] = ("clean/mean", "pool/mean")
    metrics: tuple[str, ...] = ("accuracy", "ece/uniform/15/l1")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A claim shape: which sets (by role), how they aggregate, and the bootstrap design."""

    sets: str  # clean | pool | corruption (every corruption set) | domain | ambiguous | subset
    aggregate: str
    design: str = "hierarchical"


KINDS: Registry[Kind] = Registry("simulated claim kind")
for _name, _kind in {
    "clean/mean": Kind("clean", "mean"),
    "clean/each": Kind("clean", "each"),
    "pool/mean": Kind("pool", "mean"),
    "corruption/mean": Kind("corruption", "mean"),
    "corruption/worst": Kind("corruption", "worst"),
    "corruption/worst-difference": Kind("corruption", "worst-difference"),
    "domain/mean": Kind("domain", "mean"),
    "ambiguous/mean": Kind("ambiguous", "mean"),
    "subset/mean": Kind("subset", "mean"),
    "pool/mean/independent": Kind("pool", "mean", "independent"),
    "corruption/mean/independent": Kind("corruption", "mean", "independent"),
    "ambiguous/mean/independent": Kind("ambiguous", "mean", "independent"),
}.items():
    KINDS.register(_name, _kind)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one claim kind and metric did over a setting's benchmarks."""

    setting: str
    metric: str
    kind: str
    n_benchmarks: int
    truth: float
    coverage: float  # share of intervals (units' intervals for "each") holding the truth
    holds: float  # share judged "holds" (A better than B)
    fails: float
    mean_effect: float
    sd_effect: float  # the spread of the estimate over benchmarks: what mean_se should match
    mean_se: float
    mean_mde: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def simulate(setting: Setting, n_benchmarks: int, *, seed: int, n_resamples: int = 500, level: float = 0.95, progress: bool = False) -> list[Outcome]:
    """Run ``n_benchmarks`` simulated benchmarks of ``setting``; one :class:`Outcome` per metric and kind.

    Kinds on the same sets and design share one set of replicates (aggregated several ways)."""
    import time

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    world = setting.world
    scales = (_scale_for(setting), world.scale_b)
    noise = (setting.example_sd_a if setting.example_sd_a is not None else world.example_sd, world.example_sd)
    specs = [MetricSpec.from_id(m) for m in setting.metrics]
    truth = _truths(setting, scales, noise, specs)
    kinds = {name: KINDS.get(name) for name in setting.kinds}
    shared: dict[tuple[str, str], list[str]] = {}
    for name, kind in kinds.items():
        shared.setdefault((kind.sets, kind.design), []).append(name)
    tallies: dict[tuple[str, str], list] = {(m.id, k): [] for m in specs for k in kinds}
    timing = dict.fromkeys(tallies, 0.0)
    with threadpool_limits(1):  # small products: one BLAS thread is several times faster on shared cores
        for b in tqdm(range(n_benchmarks), desc=f"simulate {setting.name}", unit="benchmark", disable=not progress):
            bench = _benchmark(world, scales, noise, np.random.default_rng([seed, b]))
            for (sets, design), names in shared.items():
                units = _sim_units(world, bench, sets)
                for spec in specs:
                    start = time.perf_counter()
                    higher = spec.name in HIGHER_IS_BETTER
                    reps = replicates(spec, units, seed=b, n_resamples=n_resamples, design=design)
                    for name in names:
                        aggregate = kinds[name].aggregate
                        if aggregate == "each":
                            parts = [([i], truth[spec.id]["clean-task", u.task]) for i, u in enumerate(units)]
                        else:
                            parts = [(None, truth[spec.id][sets, aggregate])]
                        for only, target in parts:
                            est = estimate(reps, "mean" if aggregate == "each" else aggregate, level=level, bad_sign=-1.0 if higher else 1.0, only=only)
                            status, _ = decide(est.low, est.high, est.mde, "higher" if higher else "lower")
                            tallies[spec.id, name].append((est.low <= target <= est.high, status, est.effect, est.se, est.mde))
                    elapsed = (time.perf_counter() - start) / len(names)
                    for name in names:
                        timing[spec.id, name] += elapsed
    out = []
    for (metric, name), rows in tallies.items():
        kind = kinds[name]
        target = truth[metric][kind.sets, "mean" if kind.aggregate == "each" else kind.aggregate]
        out.append(Outcome(
            setting.name, metric, name, n_benchmarks, float(target),
            float(np.mean([r[0] for r in rows])), float(np.mean([r[1] == "holds" for r in rows])),
            float(np.mean([r[1] == "fails" for r in rows])), float(np.mean([r[2] for r in rows])),
            float(np.std([r[2] for r in rows], ddof=1)) if len(rows) > 1 else float("nan"), float(np.mean([r[3] for r in rows])), float(np.mean([r[4] for r in rows])), timing[metric, name],
        ))
    return out


def _benchmark(world: World, scales: tuple[float, float], noise: tuple[float, float], rng: np.random.Generator) -> dict:
    """One simulated benchmark: per task, its texts and every model's probabilities on every set."""
    w, K, V, n = world, world.n_corruptions, world.n_severities, world.n_corrupt
    tasks = []
    for t in range(w.n_tasks):
        sd = w.logit_sd[t % len(w.logit_sd)]
        L = rng.normal(0, sd, w.n_clean)
        y = (rng.random(w.n_clean) < _sigmoid(L)).astype(np.int64)
        copy_L = _copy_logodds(world, L[:n, None, None], rng.normal(0, 1, (K, V, n)).transpose(2, 0, 1))  # (n, K, V)
        dom_L = rng.normal(0, 0.7 * sd, (2, w.n_domain))
        dom_y = (rng.random(dom_L.shape) < _sigmoid(dom_L)).astype(np.int64)
        models = {}
        for g in range(w.n_boards):
            for s in range(w.n_seeds):
                common = rng.normal(0, 1, w.n_clean + 2 * w.n_domain)
                for m in range(2):
                    bias, logtemp = rng.normal(0, w.seed_bias_sd), rng.normal(0, w.seed_logtemp_sd)
                    own = rng.normal(0, 1, w.n_clean + 2 * w.n_domain)
                    e = noise[m] * (np.sqrt(w.shared) * common + np.sqrt(1 - w.shared) * own)
                    k = scales[m] * np.exp(logtemp)
                    clean = k * (L + e[: w.n_clean]) + bias
                    copies = k * (copy_L + e[:n, None, None] + rng.normal(0, w.copy_model_sd, copy_L.shape)) + bias
                    domain = k * (dom_L + e[w.n_clean :].reshape(2, -1)) + bias + np.array([[0.3], [-0.3]])
                    models[g, s, m] = (clean, copies.transpose(1, 2, 0), domain)  # copies (K, V, n)
        order = np.argsort(np.abs(L), kind="stable")
        subsets = [np.sort(order[: int(share * w.n_clean)]) for share in w.subsets]
        tasks.append({"y": y, "dom_y": dom_y, "models": models, "subsets": subsets})
    return {"tasks": tasks}


def _copy_logodds(world: World, L: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(n, K, V) log-odds of corrupted copies: shrunk by severity, perturbed more by later corruptions."""
    K, V = world.n_corruptions, world.n_severities
    shrink = 1 - 0.12 * np.arange(1, V + 1)
    sd = world.copy_sd * (1 + 0.2 * np.arange(K))[:, None]
    return L * shrink[None, None, :] + sd[None] * z


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _probs(logit: np.ndarray) -> np.ndarray:
    p = _sigmoid(logit.reshape(-1))
    return np.stack([1 - p, p], axis=1)


def _sim_units(world: World, bench: dict, sets: str) -> list[Unit]:
    """The units of one claim kind: per task and board, the sets of that kind, both methods."""
    units = []
    n, K, V = world.n_corrupt, world.n_corruptions, world.n_severities
    seeds = tuple(range(world.n_seeds))
    for t, task in enumerate(bench["tasks"]):
        y = task["y"]
        for g in range(world.n_boards):
            def unit(label: str, pick: Callable, labels: np.ndarray, segments: tuple, blocks: dict) -> Unit:
                preds = tuple(
                    tuple(Predictions(_probs(pick(task["models"][g, s, m])), labels) for s in seeds) for m in range(2)
                )
                return Unit(f"task{t}", f"board{g}", f"task{t}/board{g}/{label}", seeds, segments, blocks, *preds)

            clean_block = {CLEAN_BLOCK: world.n_clean}
            if sets == "clean":
                units.append(unit("clean", lambda mod: mod[0], y, (Segment(CLEAN_BLOCK, np.arange(world.n_clean)),), clean_block))
            elif sets == "pool":
                texts = np.tile(np.arange(n), K * V)
                units.append(unit("pool", lambda mod: mod[1], y[texts], (Segment(CLEAN_BLOCK, texts),), clean_block))
            elif sets == "corruption":
                for k in range(K):
                    for v in range(V):
                        units.append(unit(f"c{k}/{v}", lambda mod, k=k, v=v: mod[1][k, v], y[:n], (Segment(CLEAN_BLOCK, np.arange(n)),), clean_block))
            elif sets == "domain":
                for d in range(2):
                    block = {"family:domain": world.n_domain}
                    seg = (Segment("family:domain", np.arange(world.n_domain)),)
                    units.append(unit(f"domain{d}", lambda mod, d=d: mod[2][d], task["dom_y"][d], seg, block))
            elif sets in ("ambiguous", "subset"):
                for i, rows in enumerate(task["subsets"][: 1 if sets == "subset" else None]):
                    units.append(unit(f"ambiguous{i}", lambda mod, rows=rows: mod[0][rows], y[rows], (Segment(CLEAN_BLOCK, rows),), clean_block))
            else:
                raise ValueError(f"unknown simulated sets {sets!r}")
    return units


# -- the truth: population values, seed effects integrated by Gauss-Hermite quadrature ----

_TRUTH_N = 20_000  # texts in the large sample per task type
_NODES = 3  # Gauss-Hermite nodes per seed effect (3 x 3 points; exact for polynomials of degree 5)


def _truths(setting: Setting, scales: tuple[float, float], noise: tuple[float, float], specs: list[MetricSpec]) -> dict:
    """{metric id: {(sets, aggregate): the true A - B as the claim aggregates it, ("clean-task", task): ...}}."""
    world = setting.world
    out = {}
    for spec in specs:
        per_type = {}
        for j, sd in enumerate(world.logit_sd):
            values = [_population_sets(world, spec, sd, scales[m], noise[m], seed=j) for m in range(2)]
            per_type[j] = values
        truth: dict = {}
        task_types = [t % len(world.logit_sd) for t in range(world.n_tasks)]
        higher = spec.name in HIGHER_IS_BETTER
        worst = np.min if higher else np.max
        bad = -1.0 if higher else 1.0
        rows = {
            ("clean", "mean"): lambda a, b: a["clean"] - b["clean"],
            ("pool", "mean"): lambda a, b: a["pool"] - b["pool"],
            ("corruption", "mean"): lambda a, b: np.mean(a["corruption"]) - np.mean(b["corruption"]),
            ("corruption", "worst"): lambda a, b: worst(a["corruption"]) - worst(b["corruption"]),
            ("corruption", "worst-difference"): lambda a, b: bad * np.max(bad * (a["corruption"] - b["corruption"])),
            ("domain", "mean"): lambda a, b: np.mean(a["domain"]) - np.mean(b["domain"]),
            ("ambiguous", "mean"): lambda a, b: np.mean(a["ambiguous"]) - np.mean(b["ambiguous"]),
            ("subset", "mean"): lambda a, b: a["ambiguous"][0] - b["ambiguous"][0],
        }
        for key, diff in rows.items():
            truth[key] = float(np.mean([diff(*per_type[j]) for j in task_types]))
        for t, j in enumerate(task_types):
            truth["clean-task", f"task{t}"] = float(per_type[j][0]["clean"] - per_type[j][1]["clean"])
        out[spec.id] = truth
    return out


def _population_sets(world: World, spec: MetricSpec, sd: float, scale: float, example_sd: float, seed: int, pool_only: bool = False) -> dict:
    """One method's population metric on every set kind of a task type, averaged over seed effects
    (only the pool with ``pool_only``)."""
    rng = np.random.default_rng([seed, 12345])  # common random numbers for both methods and every scale
    N = _TRUTH_N
    L = rng.normal(0, sd, N)
    e = rng.normal(0, example_sd, N)
    K, V = world.n_corruptions, world.n_severities
    m = N // 40  # texts per corruption set in the large sample
    copy_L = _copy_logodds(world, L[:m, None, None], rng.normal(0, 1, (m, K, V)))
    copy_noise = rng.normal(0, world.copy_model_sd, copy_L.shape)
    dom_L = rng.normal(0, 0.7 * sd, (2, N // 4))
    dom_e = rng.normal(0, example_sd, dom_L.shape)
    cut = [np.quantile(np.abs(L), share) for share in world.subsets]
    nodes, weights = np.polynomial.hermite_e.hermegauss(_NODES)
    weights = weights / weights.sum()
    acc = {"clean": 0.0, "pool": 0.0, "corruption": np.zeros(K * V), "domain": np.zeros(2), "ambiguous": np.zeros(len(cut))}
    for zb, wb in zip(nodes, weights):
        for zt, wt in zip(nodes, weights):
            k, bias, w = scale * np.exp(world.seed_logtemp_sd * zt), world.seed_bias_sd * zb, wb * wt
            clean = k * (L + e) + bias
            acc["clean"] += w * _population(spec, clean, L)
            copies = k * (copy_L + e[:m, None, None] + copy_noise) + bias  # (m, K, V)
            acc["pool"] += w * _population(spec, copies, np.broadcast_to(L[:m, None, None], copies.shape))
            if pool_only:
                continue
            acc["corruption"] += w * np.array([_population(spec, copies[:, i, j], L[:m]) for i in range(K) for j in range(V)])
            acc["domain"] += w * np.array([_population(spec, k * (dom_L[d] + dom_e[d]) + bias + (0.3, -0.3)[d], dom_L[d]) for d in range(2)])
            acc["ambiguous"] += w * np.array([_population(spec, clean[np.abs(L) <= c], L[np.abs(L) <= c]) for c in cut])
    return acc


def _population(spec: MetricSpec, logit: np.ndarray, true_logodds: np.ndarray) -> float:
    """The metric with expected labels: every text twice, label 1 weighted sigmoid(L), label 0 the rest."""
    probs = _probs(logit)
    p1 = _sigmoid(np.asarray(true_logodds, dtype=np.float64).reshape(-1))
    n = len(p1)
    preds = Predictions(np.concatenate([probs, probs]), np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)])
    weights = np.r_[1 - p1, p1][None, :] * 2  # mean weight 1 per row: n-dependent estimators see 2n rows
    linear = LINEAR.get(spec.name) if spec.name in LINEAR else None
    if linear is not None and linear.fits(spec):
        return float(linear.finish(np.asarray(weights @ linear.matrix(preds, spec, np.arange(2 * n), 2 * n)), spec)[0])
    weighted = WEIGHTED.get(spec.name) if spec.name in WEIGHTED else None
    if weighted is None or not weighted.fits(spec):
        raise ValueError(f"metric {spec.id} has no weighted form: its population value cannot be computed")
    return float(weighted(preds, spec, weights)[0])


def _scale_for(setting: Setting) -> float:
    """A's scale giving the setting's true pooled-corruption ECE difference (B's scale when 0)."""
    world = setting.world
    if setting.ece_delta == 0:
        return world.scale_b
    spec = MetricSpec("ece", "uniform", 15, "l1")
    noise = setting.example_sd_a if setting.example_sd_a is not None else world.example_sd

    def pooled(scale: float, sd_e: float) -> float:
        types = [t % len(world.logit_sd) for t in range(world.n_tasks)]
        cache = {j: _pool_only(world, spec, world.logit_sd[j], scale, sd_e, j) for j in set(types)}
        return float(np.mean([cache[j] for j in types]))

    target = pooled(world.scale_b, world.example_sd) + setting.ece_delta
    lo, hi = None, world.scale_b
    for s in np.linspace(world.scale_b, 0.4, 11)[1:]:
        if pooled(s, noise) <= target:
            lo = s
            break
        hi = s
    if lo is None:
        raise ValueError(f"setting {setting.name!r}: no scale gives a pooled ECE difference of {setting.ece_delta}")
    return float(brentq(lambda s: pooled(s, noise) - target, lo, hi, xtol=1e-4))


def _pool_only(world: World, spec: MetricSpec, sd: float, scale: float, example_sd: float, seed: int) -> float:
    return _population_sets(world, spec, sd, scale, example_sd, seed, pool_only=True)["pool"]


# -- the standard simulation: what `cud-bench simulate` runs -----------------------------

CORRUPTION_SIZES = (30, 100, 300, 500)  # texts per corruption x severity, as the power table asks
POWER_SEEDS = (3, 5)  # training seeds of the power settings: release 1.0's and release 2.0's
FAMILY_SIZES = (30, 300)  # the corruption family at release 1.0's size and corruption v2's
ECE_DELTAS = (-0.005, -0.01, -0.02, -0.05)  # true pooled-corruption ECE differences A - B
NULL_KINDS = (
    "clean/mean", "clean/each", "pool/mean", "domain/mean", "ambiguous/mean", "subset/mean",
    "pool/mean/independent", "ambiguous/mean/independent",
)
FAMILY_KINDS = ("corruption/mean", "corruption/worst", "corruption/worst-difference", "corruption/mean/independent")
BASE_METRICS = ("accuracy", "ece/uniform/15/l1")


def standard_settings(metrics: Sequence[str] = BASE_METRICS) -> list[Setting]:
    """The settings of the README's table: no true difference at every corruption size (every
    claim kind but the 50-set corruption family; also with release 2.0's 5 seeds), the corruption
    family (mean, worst, worst difference, and the per-unit design) at release 1.0's and
    corruption v2's sizes with calibration metrics only (its cost grows with the number of sets),
    pooled-corruption ECE differences of 0.5, 1, 2 and 5 points at every size with 3 and 5 seeds
    (power), a true accuracy difference, and claims over 2 tasks and 1 task (the shapes of the
    domain-transfer and tail-class claims)."""
    calibration = tuple(m for m in metrics if m != "accuracy")
    out = [Setting(f"null-n{n}", World(n_corrupt=n), kinds=NULL_KINDS, metrics=tuple(metrics)) for n in CORRUPTION_SIZES]
    out.append(Setting("null-s5-n300", World(n_corrupt=300, n_seeds=5), kinds=NULL_KINDS, metrics=tuple(metrics)))  # release 2.0's shape
    out += [Setting(f"family-null-n{n}", World(n_corrupt=n), kinds=FAMILY_KINDS, metrics=calibration) for n in FAMILY_SIZES]
    for delta in ECE_DELTAS:
        for seeds in POWER_SEEDS:
            for n in CORRUPTION_SIZES:
                name = f"ece{delta * 100:+g}pt" + ("" if seeds == World.n_seeds else f"-s{seeds}") + f"-n{n}"
                out.append(Setting(name, World(n_corrupt=n, n_seeds=seeds), ece_delta=delta, kinds=("pool/mean", "clean/mean"), metrics=calibration))
    out.append(Setting("accuracy-n30", World(n_corrupt=30), example_sd_a=0.8, kinds=("clean/mean", "pool/mean"), metrics=tuple(metrics)))
    # claims over few tasks (domain transfer: 2 tasks; tail classes: 1), where the t correction matters most
    out.append(Setting("null-2tasks", World(n_tasks=2), kinds=("domain/mean", "clean/mean"), metrics=tuple(metrics)))
    out.append(Setting("null-1task", World(n_tasks=1), kinds=("subset/mean", "clean/mean"), metrics=tuple(metrics)))
    return out


@dataclasses.dataclass(frozen=True)
class SeedSpread:
    """How much a metric moves between training seeds: the RMS over groups (a task, board and
    protocol) of the across-seed SD of A - B (paired by seed) and of B alone, clean test set."""

    source: str
    metric: str
    paired: float
    alone: float
    groups: int


def seed_spread(source: str, metric: str, groups: Sequence[tuple[Sequence[float], Sequence[float]]]) -> SeedSpread:
    """``groups``: per group, A's and B's values over the same seeds (at least two)."""
    paired = [np.std(np.subtract(a, b), ddof=1) for a, b in groups]
    alone = [np.std(b, ddof=1) for _, b in groups]
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    return SeedSpread(source, metric, rms(paired), rms(alone), len(groups))


def release_seed_spread(entries: Iterable[dict[str, Any]], metric: str, a: str = "cud", b: str = "kd") -> SeedSpread:
    """The spread in a release: A and B's raw clean-test scores per task, student and protocol."""
    values: dict[tuple, dict[str, dict[int, float]]] = {}
    for entry in entries:
        cell = entry["cell"]
        if cell["method"] in (a, b):
            score = dict(zip(entry["metrics"]["classification"], entry["sets"]["clean"]["raw"]))[metric]
            values.setdefault((cell["task"], cell["student"], cell["protocol"]), {a: {}, b: {}})[cell["method"]][cell["seed"]] = score
    groups = []
    for by_method in values.values():
        seeds = sorted(set(by_method[a]) & set(by_method[b]))
        if len(seeds) >= 2:
            groups.append(([by_method[a][s] for s in seeds], [by_method[b][s] for s in seeds]))
    return seed_spread(f"{a} - {b}", metric, groups)


def simulated_seed_spread(world: World, metric: str, n_benchmarks: int, *, seed: int) -> SeedSpread:
    """The same spread in ``world``'s simulated benchmarks with no true difference (A - B per task and board)."""
    spec = MetricSpec.from_id(metric)
    setting = Setting("null", world)
    scales, noise = (_scale_for(setting), world.scale_b), (world.example_sd, world.example_sd)
    groups = []
    for b in range(n_benchmarks):
        for task in _benchmark(world, scales, noise, np.random.default_rng([seed, b]))["tasks"]:
            for g in range(world.n_boards):
                value = lambda s, m: METRICS.get(spec.name)(Predictions.of(_probs(task["models"][g, s, m][0]), task["y"]), spec)  # noqa: E731
                groups.append(tuple([value(s, m) for s in range(world.n_seeds)] for m in (0, 1)))
    return seed_spread("simulated A - B", metric, groups)


def seed_spread_report(entries: Iterable[dict[str, Any]], version: str, metrics: Sequence[str], n_benchmarks: int, *, seed: int) -> str:
    """Release ``version``'s seed spread beside the simulator's (its default world), per metric:
    whether the simulated benchmarks vary between seeds as much as real runs do."""
    entries = list(entries)
    lines = [
        f"Across-seed SD of clean-test scores (RMS over groups, points): release {version} (cud - kd paired, and kd alone; "
        f"per task, student and protocol) against the simulator's default world (A - B and B; per task and board; "
        f"{n_benchmarks} benchmarks, seed {seed}).",
        "",
        "| metric | release: paired | release: alone | simulated: paired | simulated: alone | simulated / release (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for metric in metrics:
        real = release_seed_spread(entries, metric)
        if not real.groups:
            raise CudBenchError(f"release {version} has no task, student and protocol with cud and kd on two or more seeds")
        sim = simulated_seed_spread(World(), metric, n_benchmarks, seed=seed)
        lines.append(
            f"| {metric} | {100 * real.paired:.2f} ({real.groups} groups) | {100 * real.alone:.2f} | {100 * sim.paired:.2f} "
            f"({sim.groups} groups) | {100 * sim.alone:.2f} | {sim.paired / real.paired:.2f} |"
        )
    return "\n".join(lines)


def run_simulation(
    settings: Sequence[Setting], n_benchmarks: int, *, seed: int = 0, n_resamples: int = 500, jobs: int = 1
) -> list[Outcome]:
    """Every setting's outcomes; settings run in ``jobs`` worker processes."""
    from concurrent.futures import ProcessPoolExecutor

    if jobs <= 1:
        return [o for s in settings for o in simulate(s, n_benchmarks, seed=seed, n_resamples=n_resamples, progress=True)]
    with ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(simulate, s, n_benchmarks, seed=seed, n_resamples=n_resamples, progress=True) for s in settings]
        return [o for f in futures for o in f.result()]


def simulation_markdown(outcomes: Sequence[Outcome], level: float = 0.95) -> str:
    """The README's tables: coverage and false "holds" per claim kind; power of the pooled-corruption
    ECE claim by true difference and corruption size; the size at which a 2-point difference has power 0.8."""
    lines = [
        f"Coverage of {level:.0%} intervals of the true A - B, share judged \"holds\" (A better) and \"fails\", "
        "mean estimate and minimum detectable effect. Target: coverage 93-97%; \"holds\" <= 2.5% when the truth is 0. "
        "`independent` is the per-unit bootstrap this design replaces. ± is the Monte Carlo 95% margin of a share over "
        "that many benchmarks; \"within MC error\" means outside the target but not distinguishable from it.",
        "",
        "| setting | metric | claim kind | benchmarks | truth | coverage | holds | fails | mean effect | MDE | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.setting} | {o.metric} | {o.kind} | {o.n_benchmarks} | {o.truth:+.4f} | {o.coverage:.3f} ± {_mc(o.coverage, o.n_benchmarks):.3f} "
            f"| {o.holds:.3f} | {o.fails:.3f} | {o.mean_effect:+.4f} | {o.mean_mde:.4f} | {within_target(o)} |"
        )
    power = {}  # (metric, seeds) -> {(true difference in points, n): share "holds"}
    for o in outcomes:
        name = _POWER_SETTING.fullmatch(o.setting)
        if name and o.kind == "pool/mean":
            seeds = int(name["seeds"] or World.n_seeds)
            power.setdefault((o.metric, seeds), {})[float(name["delta"]), int(name["n"])] = o.holds
    for (metric, seeds), table in sorted(power.items()):
        deltas = sorted({d for d, _ in table}, reverse=True)
        sizes = sorted({n for _, n in table})
        lines += ["", f"Power of the pooled-corruption claim (A lower {metric} than B, mean over tasks), {seeds} training seeds, "
                  "by the true difference that defines the setting (pooled ece/uniform/15/l1) and texts per corruption:", ""]
        lines += ["| true difference | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for d in deltas:
            lines.append(f"| {d:g}pt | " + " | ".join(f"{table.get((d, n), float('nan')):.3f}" for n in sizes) + " |")
        enough = [n for n in sizes if table.get((-2.0, n), 0) >= 0.8]
        lines += ["", f"Smallest n per corruption with power >= 0.8 for a 2-point difference ({metric}, {seeds} seeds): "
                  + (f"{enough[0]}" if enough else f"none up to {max(sizes)}")]
    return "\n".join(lines) + "\n"


_POWER_SETTING = re.compile(r"ece(?P<delta>[+-][0-9.]+)pt(?:-s(?P<seeds>[0-9]+))?-n(?P<n>[0-9]+)")


def _mc(share: float, n: int) -> float:
    """The Monte Carlo 95% margin of a share estimated from ``n`` benchmarks (at least one count's worth)."""
    return 1.96 * np.sqrt(max(share * (1 - share), 1 / n) / n)


def within_target(o: Outcome) -> str:
    """"yes" when coverage (and, at a true 0, the false-"holds" rate) meets the target; "within MC
    error" when it misses but the target lies inside the Monte Carlo margin; "**no**" otherwise."""
    cover = (0.93 <= o.coverage <= 0.97, 0.93 - _mc(o.coverage, o.n_benchmarks) <= o.coverage <= 0.97 + _mc(o.coverage, o.n_benchmarks))
    holds = (True, True) if o.truth != 0 else (o.holds <= 0.025, o.holds - _mc(o.holds, o.n_benchmarks) <= 0.025)
    if cover[0] and holds[0]:
        return "yes"
    return "within MC error" if cover[1] and holds[1] else "**no**"


def read_simulation(paths: Sequence[Any]) -> list[Outcome]:
    """The outcomes stored in ``simulation_json`` files, in order (several runs make one table)."""
    import json
    from pathlib import Path

    out = []
    for path in paths:
        try:
            rows = json.loads(Path(path).read_text())["outcomes"]
            out += [Outcome(**row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CudBenchError(f"{path}: not a simulation result written by `cud-bench simulate` ({error})") from error
    return out


def simulation_json(outcomes: Sequence[Outcome], **meta: Any) -> str:
    import json

    return json.dumps({**meta, "outcomes": [o.to_dict() for o in outcomes]}, indent=1, sort_keys=True) + "\n"


def select_settings(patterns: Sequence[str] | None, metrics: Sequence[str] | None = None, kinds: Sequence[str] | None = None) -> list[Setting]:
    """The standard settings whose names match any of ``patterns`` (all when None), with ``metrics``,
    keeping only the claim ``kinds`` given (settings left without one are dropped)."""
    import fnmatch

    from cud_bench.errors import CudBenchError

    for metric in metrics or ():
        spec = MetricSpec.from_id(metric)
        if spec.name not in METRICS.names() or not ((spec.name in LINEAR and LINEAR.get(spec.name).fits(spec)) or (spec.name in WEIGHTED and WEIGHTED.get(spec.name).fits(spec))):
            raise CudBenchError(f"metric {metric!r} has no weighted form, so its population value cannot be computed; "
                                f"weighted metrics: {', '.join(sorted(set(LINEAR.names()) | set(WEIGHTED.names())))}")
    settings = standard_settings(tuple(metrics) if metrics else BASE_METRICS)
    chosen = [s for s in settings if patterns is None or any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
    if kinds is not None:
        for kind in kinds:
            KINDS.get(kind)  # unknown names: a CudBenchError with the near names
        chosen = [dataclasses.replace(s, kinds=tuple(k for k in s.kinds if k in kinds)) for s in chosen]
        chosen = [s for s in chosen if s.kinds]
    if not chosen:
        raise CudBenchError(f"no setting matches {list(patterns or [])}; settings: {', '.join(s.name for s in settings)}")
    return chosen


def write_simulation(settings: Sequence[Setting], n_benchmarks: int, out: Any, *, seed: int, n_resamples: int, jobs: int = 1) -> str:
    """Run the settings, write ``out``.json and ``out``.md atomically, and return the Markdown."""
    import time
    from pathlib import Path

    from cud_bench.io import write_bytes_atomic

    start = time.perf_counter()
    outcomes = run_simulation(settings, n_benchmarks, seed=seed, n_resamples=n_resamples, jobs=jobs)
    text = simulation_markdown(outcomes)
    meta = {"benchmarks": n_benchmarks, "resamples": n_resamples, "seed": seed, "seconds": round(time.perf_counter() - start, 1)}
    out = Path(out)
    write_bytes_atomic(out.with_suffix(".json"), simulation_json(outcomes, **meta).encode())
    write_bytes_atomic(out.with_suffix(".md"), text.encode())
    return text


def combine_simulations(paths: Sequence[Any], out: Any) -> str:
    """One table from several runs' JSON files: writes ``out``.json (each source's settings kept) and ``out``.md."""
    import json
    from pathlib import Path

    from cud_bench.io import write_bytes_atomic

    outcomes = read_simulation(paths)
    sources = []
    for path in paths:
        meta = json.loads(Path(path).read_text())
        sources.append({"file": Path(path).name, **{k: v for k, v in meta.items() if k != "outcomes"}})
    text = simulation_markdown(outcomes)
    out = Path(out)
    write_bytes_atomic(out.with_suffix(".json"), simulation_json(outcomes, sources=sources).encode())
    write_bytes_atomic(out.with_suffix(".md"), text.encode())
    return text
