"""Statistics over seeds and examples: what the leaderboard's views print.

A *board* holds the cells that differ only in method and seed (same suite,
task, target protocol and student architecture). For each board, method,
evaluation set, variant (raw / after temperature scaling) and metric:

- ``mean ± std`` over the seeds, from the stored per-seed scores (sample std);
- for the sets in ``tested_sets``, a percentile-bootstrap interval that
  resamples seeds and examples (:func:`cud_bench.metrics.bootstrap_interval`;
  in a pool, the corrupted copies of one test text are drawn together),
  and a paired comparison with the reference method (vanilla KD) on the seeds
  both have and the same examples (:func:`cud_bench.metrics.paired_bootstrap`),
  with its two-sided p-value;
- a rank among the board's methods by mean (1 = best), kept only when the
  method's difference from the reference is distinguishable (p < 1 - level);
  the reference itself and metrics without a better direction get no rank.

Seeds of one method are aggregated only when they were produced under the same
spec hashes, and a method is compared with the reference only when everything
but the method matches; otherwise the statistic carries a ``note`` saying which
hashes differ, and no number. Every bootstrap draws from a seed derived from
what it is about, so a rebuild gives the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cud_bench.metrics import METRICS, bootstrap_interval, paired_bootstrap
from cud_bench.specs import MetricSpec, content_hash
from leaderboard import entry as entry_format
from leaderboard.entry import VARIANTS

REFERENCE = "kd"
LEVEL = 0.95
HIGHER_IS_BETTER = ("accuracy", "macro_f1", "ood_auroc")  # metric names; others are lower-is-better ...
NO_DIRECTION = ("mean_confidence", "ood_mean_confidence")  # ... except these, which are not ranked

Loader = Callable[[dict[str, Any]], dict[str, np.ndarray]]  # entry -> its predictions
Stacker = Callable[[list[dict[str, Any]], str, str], "Stacked"]  # see stack_seeds


@dataclasses.dataclass(frozen=True)
class Stacked:
    """One set's predictions over seeds: (seeds, n, C) probabilities, (n,) labels, (n,) bootstrap
    groups, or a ``problem`` saying why the seeds cannot be stacked."""

    probs: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    problem: str = ""


@dataclasses.dataclass(frozen=True, order=True)
class Board:
    suite: str
    task: str
    protocol: str
    student: str

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Board:
        cell = entry["cell"]
        return cls(cell["suite"], cell["task"], cell["protocol"], cell["student"])

    @property
    def label(self) -> str:
        return f"{self.suite} / {self.task} / {self.protocol} / {self.student}"


@dataclasses.dataclass(frozen=True)
class Stat:
    """One number of the leaderboard with its uncertainty; fields are None where not computed."""

    board: Board
    method: str
    set_id: str
    variant: str
    metric: str
    seeds: tuple[int, ...] = ()
    values: tuple[float, ...] = ()  # per seed, in seed order
    mean: float | None = None
    std: float | None = None  # sample std over seeds (None for one seed)
    low: float | None = None  # bootstrap interval of the mean
    high: float | None = None
    delta: float | None = None  # mean(method) - mean(reference) on the shared seeds
    delta_low: float | None = None
    delta_high: float | None = None
    p_value: float | None = None
    rank: int | None = None
    note: str = ""


def boards(entries: Iterable[dict[str, Any]]) -> dict[Board, dict[str, list[dict[str, Any]]]]:
    """Entries by board, then method (sorted), each list sorted by seed."""
    grouped: dict[Board, dict[str, list[dict[str, Any]]]] = {}
    for e in entries:
        grouped.setdefault(Board.of(e), {}).setdefault(e["cell"]["method"], []).append(e)
    return {
        b: {m: sorted(es, key=lambda e: e["cell"]["seed"]) for m, es in sorted(methods.items())}
        for b, methods in sorted(grouped.items())
    }


def board_sets(methods: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The board's set ids: clean, pools, then shifted sets by shift and numeric severity."""
    ids = {s for es in methods.values() for e in es for s in e["sets"]}

    def order(set_id: str) -> tuple:
        head, _, rest = set_id.partition("/")
        return (head != entry_format.CLEAN, head != entry_format.POOL, head, int(rest) if rest.isdigit() else rest)

    return sorted(ids, key=order)


def summarize_board(
    board: Board,
    methods: dict[str, list[dict[str, Any]]],
    load: Loader,
    *,
    metrics: Iterable[str],
    tested_sets: Iterable[str] = (),
    n_resamples: int = 1000,
    level: float = LEVEL,
) -> list[Stat]:
    """Every statistic of one board for ``metrics`` (ids) on every set, variant and method.

    ``load`` returns an entry's predictions; it is called only for ``tested_sets``.
    """
    metrics, tested = list(metrics), set(tested_sets)
    out = []
    loaded: dict[int, dict[str, np.ndarray]] = {}
    stacked: dict[tuple, Stacked] = {}

    def stack(entries: list[dict[str, Any]], set_id: str, variant: str) -> Stacked:
        key = (tuple(id(e) for e in entries), set_id, variant)
        if key not in stacked:
            for e in entries:
                if id(e) not in loaded:
                    loaded[id(e)] = load(e)
            stacked[key] = stack_seeds([(loaded[id(e)], e) for e in entries], set_id, variant)
        return stacked[key]

    for set_id in board_sets(methods):
        for variant in VARIANTS:
            for metric in metrics:
                column = [_seed_stat(board, m, es, set_id, variant, metric) for m, es in methods.items()]
                if set_id in tested and metric.split("/")[0] in METRICS:
                    column = _tested(column, methods, set_id, stack, n_resamples, level)
                out += _ranked(column, level)
        stacked.clear()  # a set's stacks are not needed again; they can be large
    return out


def _seed_stat(board: Board, method: str, entries: list[dict[str, Any]], set_id: str, variant: str, metric: str) -> Stat:
    """Mean and std over seeds from the stored scores, or a note on why there are none."""
    stat = Stat(board, method, set_id, variant, metric)
    have = [e for e in entries if set_id in e["sets"] and metric in _metric_ids(e, set_id)]
    if not have:
        return dataclasses.replace(stat, note="not scored")
    signatures = {}
    for e in have:
        signatures.setdefault(_signature(e, set_id, with_method=True), []).append(e["cell"]["seed"])
    if len(signatures) > 1:
        return dataclasses.replace(stat, note="incompatible: " + _explain(signatures))
    values = tuple(e["sets"][set_id][variant][_metric_ids(e, set_id).index(metric)] for e in have)
    return dataclasses.replace(
        stat,
        seeds=tuple(e["cell"]["seed"] for e in have),
        values=values,
        mean=float(np.mean(values)),
        std=float(np.std(values, ddof=1)) if len(values) > 1 else None,
    )


def _tested(
    column: list[Stat], methods: dict[str, list[dict[str, Any]]], set_id: str, stack: Stacker, n_resamples: int, level: float
) -> list[Stat]:
    """Add bootstrap intervals and the paired comparison with the reference to a column."""
    by_method = {s.method: s for s in column}
    ref = by_method.get(REFERENCE)
    out = []
    for stat in column:
        if stat.mean is None:
            out.append(stat)
            continue
        entries = {e["cell"]["seed"]: e for e in methods[stat.method] if e["cell"]["seed"] in stat.seeds}
        spec = MetricSpec.from_id(stat.metric)
        mine = stack([entries[s] for s in stat.seeds], set_id, stat.variant)
        if mine.problem:
            out.append(dataclasses.replace(stat, note=mine.problem))
            continue
        interval = bootstrap_interval(
            spec, mine.probs, mine.labels, seed=_seed(stat, "interval"), n_resamples=n_resamples, level=level, groups=mine.groups
        )
        stat = dataclasses.replace(stat, low=interval.low, high=interval.high)
        if ref is not None and ref.mean is not None and stat.method != REFERENCE:
            stat = _compare(stat, entries, ref, methods[REFERENCE], set_id, stack, spec, n_resamples, level)
        out.append(stat)
    return out


def _compare(
    stat: Stat,
    entries: dict[int, dict[str, Any]],
    ref: Stat,
    ref_entries: list[dict[str, Any]],
    set_id: str,
    stack: Stacker,
    spec: MetricSpec,
    n_resamples: int,
    level: float,
) -> Stat:
    ref_by_seed = {e["cell"]["seed"]: e for e in ref_entries if e["cell"]["seed"] in ref.seeds}
    shared = sorted(set(entries) & set(ref_by_seed))
    if not shared:
        return dataclasses.replace(stat, note=f"no seed shared with {REFERENCE}")
    mine, theirs = _signature(entries[shared[0]], set_id), _signature(ref_by_seed[shared[0]], set_id)
    if mine != theirs:
        return dataclasses.replace(stat, note=f"not comparable with {REFERENCE}: " + _explain({mine: [stat.method], theirs: [REFERENCE]}))
    a = stack([entries[s] for s in shared], set_id, stat.variant)
    b = stack([ref_by_seed[s] for s in shared], set_id, stat.variant)
    if a.problem or b.problem or not np.array_equal(a.labels, b.labels):
        return dataclasses.replace(stat, note=f"not comparable with {REFERENCE}: different examples")
    d = paired_bootstrap(
        spec, a.probs, b.probs, a.labels, seed=_seed(stat, "paired"), n_resamples=n_resamples, level=level, groups=a.groups
    )
    return dataclasses.replace(stat, delta=d.difference, delta_low=d.low, delta_high=d.high, p_value=d.p_value)


def _ranked(column: list[Stat], level: float) -> list[Stat]:
    """Competition ranks by mean (1 = best), kept only where distinguishable from the reference."""
    name = column[0].metric.split("/")[0]
    if name in NO_DIRECTION:
        return column
    sign = -1.0 if name in HIGHER_IS_BETTER else 1.0
    means = [sign * s.mean for s in column if s.mean is not None]
    out = []
    for s in column:
        if s.p_value is not None and s.p_value < 1 - level:
            s = dataclasses.replace(s, rank=1 + sum(m < sign * s.mean for m in means))
        out.append(s)
    return out


def stack_seeds(seeds: list[tuple[dict[str, np.ndarray], dict[str, Any]]], set_id: str, variant: str) -> Stacked:
    """One set's predictions from (predictions, entry) pairs, temperature-scaled per seed for "ts"."""
    probs, labels = [], None
    for arrays, e in seeds:
        p, y = entry_format.variant_rows(arrays, set_id, e["shifts"], e["temperature"], variant)
        if labels is not None and not np.array_equal(labels, y):
            return Stacked(np.empty(0), np.empty(0), np.empty(0), "seeds were scored on different examples")
        labels = y
        probs.append(p)
    return Stacked(np.stack(probs), labels, entry_format.set_groups(arrays, set_id, e["shifts"]))


def _signature(entry: dict[str, Any], set_id: str, with_method: bool = False) -> tuple[tuple[str, str], ...]:
    """The spec hashes a number on ``set_id`` depends on, as sorted (name, hash) pairs."""
    specs = dict(entry["specs"])
    if not with_method:
        specs.pop("method")
    specs["subset"] = entry["task"]["subset"]
    for shift in _shifts_of(entry, set_id):
        specs[f"shift {shift}"] = entry["shifts"][shift]["hash"]
    return tuple(sorted(specs.items()))


def _shifts_of(entry: dict[str, Any], set_id: str) -> list[str]:
    head, _, rest = set_id.partition("/")
    if head == entry_format.CLEAN:
        return []
    if head == entry_format.POOL:
        return sorted(s for s, info in entry["shifts"].items() if info["family"] == rest and info["kind"] in entry_format.POOLED_KINDS)
    return [head]


def _explain(signatures: dict[tuple, list]) -> str:
    """Which hashes differ between signatures, and who has each."""
    keys = sorted({k for sig in signatures for k, _ in sig})
    differing = [k for k in keys if len({dict(sig).get(k) for sig in signatures}) > 1]
    parts = []
    for sig, who in signatures.items():
        d = dict(sig)
        parts.append(f"{', '.join(map(str, who))} under " + ", ".join(f"{k}={d.get(k)}" for k in differing))
    return "; ".join(parts)


def _metric_ids(entry: dict[str, Any], set_id: str) -> list[str]:
    return entry_format.set_metric_ids(entry, set_id)


def _seed(stat: Stat, purpose: str) -> int:
    """A bootstrap seed derived from what the bootstrap is about."""
    key = (dataclasses.astuple(stat.board), stat.method, stat.set_id, stat.variant, stat.metric, purpose)
    return int(content_hash(key, 8), 16) >> 1
