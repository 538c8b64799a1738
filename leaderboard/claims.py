"""Claims as tests: a comparative statement about two methods, checked with a test that can fail.

A claims file (YAML, read with ``yaml.safe_load``) lists claims such as "CUD's
student has lower ECE than vanilla KD's under lexical corruption". Each claim
(:class:`ClaimSpec`) names a metric, the sets and tasks it covers, the two sides
compared (``cud``: a method's student; ``cud/teacher``: its teacher), the
direction (side A's metric is ``lower`` or ``higher`` than side B's), how the
per-task results are combined, the test, its level, the minimum number of
seeds, and whether it is ``required`` or only ``tracked``.

A *unit* is one board (suite, task, target protocol, student architecture) and
one set. Per unit, ``paired-bootstrap`` resamples seeds and examples (the
corrupted copies of one text together) with the same draws for both sides;
``sign-test`` compares the stored per-seed numbers (the only test for
teachers, whose predictions are not stored). Aggregations: ``each`` (every unit
must hold; one that fails fails the claim), ``mean`` (the mean over units of
the difference, its replicates averaged over independent bootstraps), ``worst``
(each side's worst unit, e.g. its worst shift, compared).

Verdicts: **holds** when the interval of A - B (level ``level``) lies on the
claimed side of zero; **fails** when it lies on the other side; otherwise
**inconclusive** (an interval that straddles zero, fewer than ``min_seeds``
seeds, or no unit to test). A sign test holds or fails only with p < 1 - level.
A ``robust`` claim names a pattern of sweep variants as side A (``cud+*``) and
holds when at least ``robust`` of them hold; it fails when more than
``1 - robust`` of them fail.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import yaml
from scipy.stats import binomtest

from cud_bench.errors import CudBenchError
from cud_bench.metrics import bootstrap_replicates, difference_interval
from cud_bench.records import read_record
from cud_bench.specs import MetricSpec, content_hash
from leaderboard import entry as entry_format
from leaderboard.stats import HIGHER_IS_BETTER, Board, boards, stack_seeds

TESTS = ("paired-bootstrap", "sign-test")
AGGREGATES = ("each", "mean", "worst")
DIRECTIONS = ("lower", "higher")
ROLES = ("student", "teacher")
STATUSES = ("holds", "fails", "inconclusive")


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a comparison, written ``METHOD[/ROLE][:VARIANT]``: a method (or, for robust
    claims, a pattern), which of its models (student or teacher) and, to compare a method
    with itself, which predictions (``ce:ts`` against ``ce:raw``; default: the claim's)."""

    method: str
    role: str = "student"
    variant: str | None = None

    @classmethod
    def parse(cls, text: Any, where: str) -> Side:
        if not isinstance(text, str) or not text:
            raise CudBenchError(f"{where}: expected a method such as 'cud', 'cud/teacher' or 'ce:ts', got {text!r}")
        rest, _, variant = text.partition(":")
        method, _, role = rest.partition("/")
        if (role or "student") not in ROLES or (variant and variant not in entry_format.VARIANTS):
            raise CudBenchError(
                f"{where}: {text!r}: roles are {', '.join(ROLES)}, variants {', '.join(entry_format.VARIANTS)}"
            )
        return cls(method, role or "student", variant or None)

    def __str__(self) -> str:
        role = "" if self.role == "student" else f"/{self.role}"
        return f"{self.method}{role}{':' + self.variant if self.variant else ''}"


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """One claim; see the module docstring. Empty ``tasks``/``protocols``/``students`` mean all."""

    id: str
    a: Side
    b: Side
    metric: str
    direction: str
    sets: tuple[str, ...] = (entry_format.CLEAN,)
    tasks: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    students: tuple[str, ...] = ()
    variant: str = "raw"
    aggregate: str = "each"
    test: str = "paired-bootstrap"
    level: float = 0.95
    min_seeds: int = 3
    required: bool = False
    robust: float | None = None
    n_resamples: int = 1000
    description: str = ""

    def __post_init__(self) -> None:
        where = f"claim {self.id!r}"
        for field, allowed in (("direction", DIRECTIONS), ("aggregate", AGGREGATES), ("test", TESTS), ("variant", entry_format.VARIANTS)):
            if getattr(self, field) not in allowed:
                raise CudBenchError(f"{where}: {field} {getattr(self, field)!r} is not one of {', '.join(allowed)}")
        if not 0.5 <= self.level < 1:
            raise CudBenchError(f"{where}: level must be in [0.5, 1), got {self.level}")
        if self.min_seeds < 1 or self.n_resamples < 100:
            raise CudBenchError(f"{where}: need min_seeds >= 1 and n_resamples >= 100")
        if self.robust is not None and not 0 < self.robust <= 1:
            raise CudBenchError(f"{where}: robust is the share of sweep settings that must hold, in (0, 1]")
        if "teacher" in (self.a.role, self.b.role) and (self.test != "sign-test" or self.sets != (entry_format.CLEAN,)):
            raise CudBenchError(f"{where}: teachers are compared on the clean test set with test: sign-test (their predictions are not stored)")
        if not self.sets:
            raise CudBenchError(f"{where}: sets must not be empty")


def load_claims(path: Path) -> list[ClaimSpec]:
    """Every claim of a claims file; any problem is one error naming the file and the claim."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CudBenchError(f"cannot read claims file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list) or not raw["claims"]:
        raise CudBenchError(f"claims file {path}: expected a mapping with a non-empty list 'claims'")
    defaults = raw.get("defaults") or {}
    fields = {f.name for f in dataclasses.fields(ClaimSpec)}
    claims, seen = [], set()
    for i, item in enumerate(raw["claims"]):
        where = f"claims file {path}, claim {i + 1}"
        if not isinstance(item, dict):
            raise CudBenchError(f"{where}: expected a mapping")
        values = {**defaults, **item}
        unknown = sorted(set(values) - fields)
        missing = sorted({"id", "a", "b", "metric", "direction"} - set(values))
        if unknown or missing:
            raise CudBenchError(f"{where}: unknown field(s) {unknown}, missing field(s) {missing}; fields: {sorted(fields)}")
        values["a"], values["b"] = Side.parse(values["a"], where), Side.parse(values["b"], where)
        for field in ("sets", "tasks", "protocols", "students"):
            if field in values:
                values[field] = tuple([values[field]] if isinstance(values[field], str) else values[field])
        try:
            claim = ClaimSpec(**values)
        except TypeError as exc:
            raise CudBenchError(f"{where}: {exc}") from None
        if claim.id in seen:
            raise CudBenchError(f"{where}: duplicate claim id {claim.id!r}")
        seen.add(claim.id)
        claims.append(claim)
    return claims


# -- results: a release, or a runner's output folder ------------------------------------


@dataclasses.dataclass
class Results:
    """Entries and a way to read each entry's predictions (a release, or records turned into entries)."""

    entries: list[dict[str, Any]]
    predictions: Callable[[dict[str, Any]], dict[str, np.ndarray]]
    source: str

    def __post_init__(self) -> None:
        read, memo = self.predictions, {}

        def cached(entry: dict[str, Any]) -> dict[str, np.ndarray]:  # a claim reads one entry once per set
            if id(entry) not in memo:
                memo[id(entry)] = read(entry)
            return memo[id(entry)]

        self.predictions = cached

    @classmethod
    def from_release(cls, release: Any) -> Results:
        return cls(release.entries(), release.predictions, f"release {release.version}")

    @classmethod
    def from_records(cls, folder: Path) -> Results:
        paths = sorted(p for p in Path(folder).rglob("*.json") if p.parent.name == "records")
        if not paths:
            raise CudBenchError(f"no result records (records/*.json) under {folder}")
        entries, files = [], {}
        for path in paths:
            record = read_record(path)
            npz = path.parent / record.get("predictions", "")
            entry = entry_format.from_record(record, npz)
            entries.append(entry)
            files[id(entry)] = npz
        return cls(entries, lambda e: entry_format.read_predictions(files[id(e)]), f"records under {folder}")


# -- verdicts --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim's (or one unit's) outcome; ``effect`` is mean A - B, with its interval when bootstrapped."""

    claim: str
    status: str
    required: bool
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    n_seeds: int = 0
    n_units: int = 0
    note: str = ""
    units: tuple[Verdict, ...] = ()
    label: str = ""  # the unit (board / set) or the sweep setting this verdict is about

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["units"] = [u.to_dict() for u in self.units]
        return out


@dataclasses.dataclass(frozen=True)
class Unit:
    board: Board
    set_id: str
    seeds: tuple[int, ...]
    a: np.ndarray  # per seed values (sign test) or bootstrap replicates (R,) of side A
    b: np.ndarray
    estimate: tuple[float, float]  # seed-averaged A and B

    @property
    def label(self) -> str:
        return f"{self.board.label} / {self.set_id}"


def check(claims: Iterable[ClaimSpec], results: Results) -> list[Verdict]:
    """The verdict of every claim on ``results``."""
    grouped = boards(results.entries)
    return [_check(claim, grouped, results) for claim in claims]


def _check(claim: ClaimSpec, grouped: dict, results: Results) -> Verdict:
    if claim.robust is None:
        return _verdict(claim, _units(claim, claim.a, grouped, results))
    methods = sorted({m for per_method in grouped.values() for m in per_method if fnmatch.fnmatchcase(m, claim.a.method)})
    settings = [dataclasses.replace(_verdict(claim, _units(claim, dataclasses.replace(claim.a, method=m), grouped, results)), label=m) for m in methods]
    base = Verdict(claim.id, "inconclusive", claim.required, n_units=len(settings), units=tuple(settings))
    if not settings:
        return dataclasses.replace(base, note=f"no method matches {claim.a.method!r}")
    share = {s: sum(v.status == s for v in settings) / len(settings) for s in STATUSES}
    status = "holds" if share["holds"] >= claim.robust else "fails" if share["fails"] > 1 - claim.robust else "inconclusive"
    note = f"holds for {share['holds']:.0%} of {len(settings)} settings (needs {claim.robust:.0%}), fails for {share['fails']:.0%}"
    return dataclasses.replace(base, status=status, note=note)


def _units(claim: ClaimSpec, a: Side, grouped: dict, results: Results) -> list[Unit]:
    units = []
    for board, per_method in grouped.items():
        if (claim.tasks and board.task not in claim.tasks) or (claim.protocols and board.protocol not in claim.protocols):
            continue
        if claim.students and board.student not in claim.students:
            continue
        if a.method not in per_method or claim.b.method not in per_method:
            continue
        for set_id in _expand_sets(claim.sets, per_method[a.method]):
            unit = _unit(claim, board, set_id, a, per_method, results)
            if unit is not None:
                units.append(unit)
    return units


def _expand_sets(selectors: tuple[str, ...], entries: list[dict[str, Any]]) -> list[str]:
    """Set ids for selectors: an id as is, ``family:NAME`` as every set of that family with labels
    (labelled sets and subsets, each severity on its own)."""
    present = sorted({s for e in entries for s in e["sets"]})
    out = []
    for selector in selectors:
        kind, _, family = selector.partition(":")
        if kind == "family" and family:
            shifts = {k: v for e in entries for k, v in e["shifts"].items()}
            out += [
                s for s in present
                if "@" in s and shifts[s.split("/")[0]]["family"] == family and entry_format.set_kind(s, shifts) != "out-of-scope"
            ]
        else:
            out.append(selector)
    return list(dict.fromkeys(out))


def _unit(claim: ClaimSpec, board: Board, set_id: str, a: Side, per_method: dict, results: Results) -> Unit | None:
    sides = [(side, {e["cell"]["seed"]: e for e in per_method[side.method] if set_id in e["sets"]}) for side in (a, claim.b)]
    seeds = tuple(sorted(set(sides[0][1]) & set(sides[1][1])))
    if not seeds:
        return None
    if claim.test == "sign-test":
        values = [np.array([_stored(by_seed[s], side, set_id, claim) for s in seeds]) for side, by_seed in sides]
        return Unit(board, set_id, seeds, values[0], values[1], (float(values[0].mean()), float(values[1].mean())))
    stacked = [
        stack_seeds([(results.predictions(by_seed[s]), by_seed[s]) for s in seeds], set_id, side.variant or claim.variant)
        for side, by_seed in sides
    ]
    if any(s.problem for s in stacked) or not np.array_equal(stacked[0].labels, stacked[1].labels):
        return None
    spec = MetricSpec.from_id(claim.metric)
    seed = int(content_hash((claim.id, str(a), dataclasses.astuple(board), set_id), 8), 16) >> 1
    estimates, replicates = bootstrap_replicates(
        spec, [s.probs for s in stacked], stacked[0].labels, seed=seed, n_resamples=claim.n_resamples, groups=stacked[0].groups
    )
    return Unit(board, set_id, seeds, replicates[:, 0], replicates[:, 1], (float(estimates[0]), float(estimates[1])))


def _stored(entry: dict[str, Any], side: Side, set_id: str, claim: ClaimSpec) -> float:
    metrics = entry["metrics"][entry_format.SCORING[entry["sets"][set_id]["kind"]]]
    if claim.metric not in metrics:
        raise CudBenchError(f"claim {claim.id!r}: metric {claim.metric!r} is not stored for set {set_id!r}; stored: {', '.join(metrics)}")
    variant = side.variant or claim.variant
    if side.role == "teacher":
        if not (entry.get("teacher") or {}).get("clean"):
            raise CudBenchError(f"claim {claim.id!r}: {entry_format.stem(entry['cell'])} has no teacher scores (method {side.method!r})")
        return entry["teacher"]["clean"][variant][metrics.index(claim.metric)]
    return entry["sets"][set_id][variant][metrics.index(claim.metric)]


def _verdict(claim: ClaimSpec, units: list[Unit]) -> Verdict:
    base = Verdict(claim.id, "inconclusive", claim.required, n_units=len(units))
    if not units:
        return dataclasses.replace(base, note="no unit to test: no board holds both sides on these sets")
    if claim.aggregate == "each" and len(units) > 1:
        parts = tuple(dataclasses.replace(_decide(claim, [u]), label=u.label) for u in units)
        statuses = {p.status for p in parts}
        status = "fails" if "fails" in statuses else "holds" if statuses == {"holds"} else "inconclusive"
        effects = [p.effect for p in parts if p.effect is not None]
        return dataclasses.replace(
            base, status=status, units=parts, effect=float(np.mean(effects)) if effects else None,
            n_seeds=min(p.n_seeds for p in parts), note=f"{sum(p.status == 'holds' for p in parts)} of {len(parts)} units hold",
        )
    return dataclasses.replace(_decide(claim, units), n_units=len(units))


def _decide(claim: ClaimSpec, units: list[Unit]) -> Verdict:
    """Combine units (mean or worst) and test A - B against the claimed direction."""
    base = Verdict(claim.id, "inconclusive", claim.required, n_units=len(units), label=units[0].label if len(units) == 1 else "")
    seeds = tuple(sorted(set.intersection(*(set(u.seeds) for u in units))))
    if claim.test == "sign-test":
        units = [_on_seeds(u, seeds) for u in units]
    a, b = _combine(claim, [u.a for u in units]), _combine(claim, [u.b for u in units])
    estimate = _combine(claim, [np.array([u.estimate[0]]) for u in units])[0] - _combine(claim, [np.array([u.estimate[1]]) for u in units])[0]
    base = dataclasses.replace(base, effect=float(estimate), n_seeds=len(seeds))
    if len(seeds) < claim.min_seeds:
        return dataclasses.replace(base, note=f"{len(seeds)} seed(s), the claim needs {claim.min_seeds}")
    sign = -1.0 if claim.direction == "lower" else 1.0
    if claim.test == "sign-test":
        d = sign * (a - b)
        wins, losses = int((d > 0).sum()), int((d < 0).sum())
        p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        status = "inconclusive" if p >= 1 - claim.level else "holds" if wins > losses else "fails"
        floor = 2 * 0.5 ** len(seeds)
        note = f"{wins} of {len(seeds)} seeds in the claimed direction, {losses} against"
        if floor >= 1 - claim.level:
            note += f"; with {len(seeds)} seeds a sign test cannot reach p < {1 - claim.level:.2g} (its smallest p is {floor:.2g})"
        return dataclasses.replace(base, status=status, p_value=float(p), note=note)
    low, high, p = difference_interval(a - b, claim.level)
    claimed = high < 0 if claim.direction == "lower" else low > 0
    opposite = low > 0 if claim.direction == "lower" else high < 0
    status = "holds" if claimed else "fails" if opposite else "inconclusive"
    note = "" if status != "inconclusive" else "the interval straddles zero"
    return dataclasses.replace(base, status=status, low=low, high=high, p_value=p, note=note)


def _on_seeds(unit: Unit, seeds: tuple[int, ...]) -> Unit:
    keep = [unit.seeds.index(s) for s in seeds]
    return dataclasses.replace(unit, seeds=seeds, a=unit.a[keep], b=unit.b[keep])


def _combine(claim: ClaimSpec, rows: list[np.ndarray]) -> np.ndarray:
    """Units combined elementwise (per replicate or per seed): their mean, or each side's worst."""
    stacked = np.stack(rows)
    if claim.aggregate != "worst":
        return stacked.mean(axis=0)
    higher_is_better = claim.metric.split("/")[0] in HIGHER_IS_BETTER
    return stacked.min(axis=0) if higher_is_better else stacked.max(axis=0)


# -- reports ---------------------------------------------------------------------------


def exit_code(verdicts: list[Verdict]) -> int:
    """0 when every required claim holds, else 1 (a required claim that fails or is inconclusive)."""
    return int(any(v.required and v.status != "holds" for v in verdicts))


def to_markdown(verdicts: list[Verdict], claims: list[ClaimSpec], source: str) -> str:
    by_id = {c.id: c for c in claims}
    lines = [
        f"Claims checked on {source}. Effect = mean(A) - mean(B) over seeds (and units); interval and p-value from "
        "the claim's test; `required` claims must hold.",
        "",
        "| claim | A vs B | metric | verdict | effect | 95% interval | p | seeds | units | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        c = by_id[v.claim]
        interval = f"[{v.low:+.4f}, {v.high:+.4f}]" if v.low is not None else "—"
        lines.append(
            f"| {v.claim}{' (required)' if v.required else ''} | {c.a} {c.direction} than {c.b} | {c.metric} ({c.variant}, {c.aggregate}) "
            f"| **{v.status}** | {_fmt(v.effect)} | {interval} | {_fmt(v.p_value, '.3g')} | {v.n_seeds} | {v.n_units} | {v.note} |"
        )
    return "\n".join(lines) + "\n"


def to_json(verdicts: list[Verdict], source: str) -> str:
    return json.dumps({"source": source, "verdicts": [v.to_dict() for v in verdicts]}, indent=1, sort_keys=True) + "\n"


def _fmt(value: float | None, spec: str = "+.4f") -> str:
    return "—" if value is None else format(value, spec)


def run_check(
    claims_file: Path,
    *,
    results: Path | None = None,
    release: str | None = None,
    suite: str | None = None,
    runs: Path = Path("runs"),
    jobs: int = 1,
    releases_root: Path | None = None,
) -> tuple[list[ClaimSpec], list[Verdict], str]:
    """Load the claims, get the results (a records folder, a release, or a suite run now, reusing
    cached teachers and features and skipping finished cells), and check every claim."""
    claims = load_claims(claims_file)
    if sum(x is not None for x in (results, release, suite)) != 1:
        raise CudBenchError("give exactly one of a results folder, a release or a suite to run")
    if release is not None:
        from leaderboard.store import DEFAULT_ROOT, open_release

        found = Results.from_release(open_release(release, releases_root or DEFAULT_ROOT))
    elif suite is not None:
        from cud_bench.runner import run_suite
        from cud_bench.suites import load_suite

        spec = load_suite(suite)
        run_suite(spec, runs, jobs=jobs)
        found = Results.from_records(Path(runs) / spec.name / "records")
    else:
        found = Results.from_records(Path(results))
    return claims, check(claims, found), found.source


def write_reports(claims: list[ClaimSpec], verdicts: list[Verdict], source: str, out: Path, stem: str) -> list[Path]:
    """``<out>/<stem>.json`` and ``<out>/<stem>.md``, written atomically."""
    from cud_bench.io import write_bytes_atomic

    paths = [Path(out) / f"{stem}.json", Path(out) / f"{stem}.md"]
    write_bytes_atomic(paths[0], to_json(verdicts, source).encode())
    write_bytes_atomic(paths[1], to_markdown(verdicts, claims, source).encode())
    return paths
