"""Claims as tests: a comparative statement about two methods, checked with a test that can fail.

A claims file (YAML, read with ``yaml.safe_load``) lists claims such as "CUD's
student has lower ECE than vanilla KD's under lexical corruption". Each claim
(:class:`ClaimSpec`) names a metric, the sets and tasks it covers, the two sides
compared (``cud``: a method's student; ``cud/teacher``: its teacher), the
direction (side A's metric is ``lower`` or ``higher`` than side B's), how the
per-task results are combined, the test, its level, the minimum number of
seeds, and whether it is ``required`` or only ``tracked``.

A *unit* is one board (suite, task, target protocol, student architecture) and
one set. ``paired-bootstrap`` is one hierarchical bootstrap per claim
(:mod:`leaderboard.inference`): seeds drawn once for every unit, test examples
drawn once per task and shared by every unit of that task (students, protocols,
corrupted copies of a text, nested subsets), the same draws for both sides.
``sign-test`` compares stored numbers over (task, seed) pairs. Aggregations:
``each`` (every unit must hold; one that fails fails the claim), ``mean`` (per
task the mean over its units, then the mean over tasks), ``worst`` (per board
each side's worst set, then the mean over boards and tasks).

Teachers count once: a teacher is shared by every student and protocol of its
task, so cells naming the same teachers are kept once. With the teachers' clean
predictions stored (``teacher/clean/probs``) they are bootstrapped like
students; otherwise a sign test over the (task, seed) pairs of their stored
scores. A (board, seed) pairing where a side's student is degenerate
(:mod:`cud_bench.degenerate`) is dropped, and the verdict says how many were.

Verdicts: **holds** when the interval of A - B (level ``level``) lies on the
claimed side of zero; **fails** when it lies on the other side; otherwise
**inconclusive** (an interval that straddles zero, fewer than ``min_seeds``
seeds, or no unit to test), marked "(below resolution)" when the interval lies
within plus or minus the minimum detectable effect. A sign test holds or fails
only with p < 1 - level. Every verdict carries its raw p-value and Holm's
adjustment over the claims of its file, and its ``parts``: the effect per task (from the
claim's own bootstrap replicates, so no new draws), per unit (``each``) or per sweep setting
(``robust``), the rows of the site's forest plots. A ``robust`` claim names a pattern of
sweep variants as side A (``cud+*``) and holds when at least ``robust`` of them
hold; it fails when more than ``1 - robust`` of them fail.

KD gain: a claim that compares a student with vanilla KD's (side B ``kd``) says something
about distillation only where KD itself carries information, so beside its verdict it gets
``kd_gain``, the verdict of the same comparison of ``kd`` against the no-teacher ``ce``
student on the same units (metric, direction, sets, tasks, protocols, students, test);
context, not a claim: it is never required and not in Holm's family.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import yaml

from cud_bench.degenerate import is_degenerate
from cud_bench.errors import CudBenchError
from cud_bench.metrics import Predictions
from cud_bench.records import read_record
from cud_bench.registry import did_you_mean
from cud_bench.specs import MetricSpec, content_hash
from cud_bench.suites import PROTOCOLS
from leaderboard import entry as entry_format
from leaderboard import inference
from leaderboard.stats import Board, boards, stack_seeds

TESTS = ("paired-bootstrap", "sign-test")
AGGREGATES = ("each", "mean", "worst")
DIRECTIONS = ("lower", "higher")
ROLES = ("student", "teacher")
STATUSES = ("holds", "fails", "inconclusive")
TEACHER_PROBS = entry_format.TEACHER_PROBS  # a teacher's clean test probabilities, when the record stores them


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
            raise CudBenchError(f"{where}: expected a method such as 'cud', 'cud/teacher' or 'ce:ts', got {text!r} ({type(text).__name__})")
        rest, _, variant = text.partition(":")
        method, _, role = rest.partition("/")
        for what, value, allowed in (("role", role or "student", ROLES), ("variant", variant or "raw", entry_format.VARIANTS)):
            if value not in allowed:
                raise CudBenchError(
                    f"{where}: {text!r}: unknown {what} {value!r}{did_you_mean(value, allowed)}; "
                    f"roles are {', '.join(ROLES)}, variants {', '.join(entry_format.VARIANTS)}"
                )
        if not method:
            raise CudBenchError(f"{where}: {text!r} names no method")
        return cls(method, role or "student", variant or None)

    def __str__(self) -> str:
        role = "" if self.role == "student" else f"/{self.role}"
        return f"{self.method}{role}{':' + self.variant if self.variant else ''}"


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """One claim; see the module docstring. Empty ``tasks``/``protocols``/``students`` mean all.
    ``metric`` is a stored metric id (``cud-bench leaderboard show`` lists them).

    Constructing one checks every field's type and range (:func:`check_fields`);
    :func:`load_claims` also checks every name against the registries (:func:`check_names`)."""

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
        check_fields(self)


# -- the claims schema: one check of every field's type, range and name ---------------------
REQUIRED_FIELDS = ("id", "a", "b", "metric", "direction")
_TEXTS = ("metric", "direction", "variant", "aggregate", "test", "description")
_LISTS = ("sets", "tasks", "protocols", "students")
_INTS = {"min_seeds": 1, "n_resamples": 100}  # field -> smallest allowed value


def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ClaimSpec)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_fields(claim: ClaimSpec) -> None:
    """Types and ranges of every field, and the fixed vocabularies (no registry look-ups).

    Every error names the claim and the field; a string where a number or a boolean belongs
    (``level: "0.95"``, ``required: "no"``) is an error, never converted or read as true."""
    if not isinstance(claim.id, str) or not claim.id:
        raise CudBenchError(f"claim {claim.id!r}: field 'id' must be a non-empty string, got {claim.id!r} ({type(claim.id).__name__})")

    def fail(field: str, why: str) -> None:
        raise CudBenchError(f"claim {claim.id!r}: field {field!r} {why}")

    def got(value: Any) -> str:
        return f"got {value!r} ({type(value).__name__})"

    for field in ("a", "b"):
        if not isinstance(getattr(claim, field), Side):
            fail(field, f"must be a side such as 'cud', 'cud/teacher' or 'ce:ts', {got(getattr(claim, field))}")
    for field in _TEXTS:
        if not isinstance(getattr(claim, field), str):
            fail(field, f"must be a string, {got(getattr(claim, field))}")
    for field in _LISTS:
        value = getattr(claim, field)
        if not isinstance(value, tuple):
            fail(field, f"must be a list of names, {got(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                fail(field, f"item {i} must be a name, {got(item)}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            fail(field, f"lists {', '.join(duplicates)} more than once")
    if not claim.sets:
        fail("sets", "must not be empty")
    for field, allowed in (
        ("direction", DIRECTIONS), ("aggregate", AGGREGATES), ("test", TESTS), ("variant", entry_format.VARIANTS), ("protocols", PROTOCOLS)
    ):
        for value in claim.protocols if field == "protocols" else (getattr(claim, field),):
            if value not in allowed:
                fail(field, f"{value!r} is not one of {', '.join(allowed)}{did_you_mean(value, allowed)}")
    if not _is_number(claim.level) or not 0.5 <= claim.level < 1:
        fail("level", f"must be a number; level must be in [0.5, 1) (0.95: a 95% interval), {got(claim.level)}")
    for field, least in _INTS.items():
        value = getattr(claim, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            fail(field, f"must be an integer >= {least}, {got(value)}")
    if not isinstance(claim.required, bool):
        fail("required", f"must be true or false, {got(claim.required)}")
    if claim.robust is not None and (not _is_number(claim.robust) or not 0 < claim.robust <= 1):
        fail("robust", f"is the share of sweep settings that must hold, a number in (0, 1] or null, {got(claim.robust)}")
    if "teacher" in (claim.a.role, claim.b.role) and claim.sets != (entry_format.CLEAN,):
        fail("sets", "must be [clean]: teachers are compared on the clean test set only")


def check_names(claim: ClaimSpec) -> None:
    """Every method (variants such as ``cud+gamma=5`` through the method parser), metric, set,
    task and student the claim names exists; an unknown one is an error naming the field,
    with the closest known names. A robust claim's side A is a pattern: its base method is
    checked when it names one."""
    from cud_bench.data.tasks import tasks
    from cud_bench.methods import VARIANT_SEP, get_method, methods
    from cud_bench.suites import model_presets

    def check(field: str, lookup: Callable[[], Any]) -> Any:
        try:
            return lookup()
        except CudBenchError as exc:
            raise CudBenchError(f"claim {claim.id!r}: field {field!r}: {exc}") from None

    for field in ("a", "b"):
        side = getattr(claim, field)
        if field == "a" and claim.robust is not None and any(c in side.method for c in "*?["):
            base = side.method.split(VARIANT_SEP)[0]
            if not any(c in base for c in "*?["):
                check(field, lambda: methods.get(base))
            continue
        spec = check(field, lambda: get_method(side.method))
        if side.role == "teacher" and spec.teacher is None:
            raise CudBenchError(f"claim {claim.id!r}: field {field!r}: method {side.method!r} trains no teacher ({side})")
    check("metric", lambda: _check_metric(claim.metric))
    for selector in claim.sets:
        check("sets", lambda: _check_set(selector))
    for name in claim.tasks:
        check("tasks", lambda: tasks.get(name))
    for name in claim.students:
        check("students", lambda: model_presets.get(name))


def _check_metric(metric: str) -> None:
    """A metric id that every entry stores (the standard classification metrics and the detection scores)."""
    from cud_bench.metrics import DETECTION_METRICS, METRICS, STANDARD_SPECS

    known = [*(s.id for s in STANDARD_SPECS), *DETECTION_METRICS]
    if metric not in known:
        raise CudBenchError(f"unknown metric {metric!r}{did_you_mean(metric, [*known, *METRICS.names()])} (stored metrics: {', '.join(known)})")


def _check_set(selector: str) -> None:
    """``clean``, ``pool/FAMILY``, ``family:FAMILY`` or ``SHIFT@vN/SEVERITY`` with a known family or shift."""
    from shifts import FAMILIES, shifts

    forms = ("sets are clean, pool/FAMILY, family:FAMILY, SHIFT@vN/SEVERITY (a set id, as `cud-bench leaderboard show` "
             "lists them) or SHIFT@*/SEVERITY (the shift's set in whichever version the results hold)")
    known = [entry_format.CLEAN, *(f"{entry_format.POOL}/{f}" for f in FAMILIES), *(f"family:{f}" for f in FAMILIES)]
    kind, colon, family = selector.partition(":")
    head, slash, rest = selector.partition("/")
    if selector == entry_format.CLEAN or (colon and kind == "family" and family in FAMILIES):
        return
    if head == entry_format.POOL and rest in FAMILIES:
        return
    name, at, version = head.partition("@v")
    if head.endswith(ANY_VERSION):
        name, at, version = head[: -len(ANY_VERSION)], "@v", "0"
    if not colon and head != entry_format.POOL and name in shifts.names():
        if at and version.isdigit() and rest:
            return
        example = f"{name}@v{shifts.get(name).spec.version}/1"
        raise CudBenchError(f"set {selector!r} of shift {name!r} needs its version and severity, e.g. {example}; {forms}")
    near = did_you_mean(selector, known) or did_you_mean(name, shifts.names())
    raise CudBenchError(f"unknown set {selector!r}{near}; {forms}; families: {', '.join(FAMILIES)}")


def load_claims(path: Path) -> list[ClaimSpec]:
    """Every claim of a claims file, validated before any work (:func:`check_fields`,
    :func:`check_names`); any problem is one error naming the file, the claim and the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CudBenchError(f"cannot read claims file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list) or not raw["claims"]:
        raise CudBenchError(f"claims file {path}: expected a mapping with a non-empty list 'claims'")
    unknown = sorted(set(raw) - {"defaults", "claims"})
    if unknown:
        raise CudBenchError(f"claims file {path}: unknown top-level key(s) {unknown}{did_you_mean(unknown[0], ('defaults', 'claims'))}; expected 'defaults' and 'claims'")
    defaults = raw.get("defaults") or {}
    fields = _fields()
    if not isinstance(defaults, dict):
        raise CudBenchError(f"claims file {path}: 'defaults' must be a mapping of claim fields, got {defaults!r}")
    unknown = sorted(set(defaults) - set(fields) | set(defaults) & {"id"})
    if unknown:
        raise CudBenchError(f"claims file {path}: defaults: unknown or per-claim field(s) {unknown}{did_you_mean(unknown[0], fields)}; fields: {fields}")
    claims, seen = [], set()
    for i, item in enumerate(raw["claims"]):
        where = f"claims file {path}: claim {i + 1}"
        if not isinstance(item, dict):
            raise CudBenchError(f"{where}: expected a mapping of claim fields, got {item!r}")
        if isinstance(item.get("id"), str) and item["id"]:
            where = f"claims file {path}: claim {item['id']!r} (number {i + 1})"
        values = {**defaults, **item}
        unknown = sorted(set(values) - set(fields))
        missing = [f for f in REQUIRED_FIELDS if f not in values]
        if unknown or missing:
            problems = [f"unknown field(s) {unknown}{did_you_mean(unknown[0], fields)}"] if unknown else []
            problems += [f"missing field(s) {missing}"] if missing else []
            raise CudBenchError(f"{where}: {', '.join(problems)}; fields: {fields}")
        for field in ("a", "b"):
            values[field] = Side.parse(values[field], f"{where}: field {field!r}")
        for field in _LISTS:
            if isinstance(values.get(field), (str, list)):
                values[field] = tuple([values[field]] if isinstance(values[field], str) else values[field])
        try:
            claim = ClaimSpec(**values)
            check_names(claim)
        except CudBenchError as exc:
            raise CudBenchError(f"claims file {path}: {exc}") from None
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
        return cls(entries, lambda e: entry_format.release_arrays(e, entry_format.read_predictions(files[id(e)])), f"records under {folder}")


# -- verdicts --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Part:
    """One row of a claim's forest plot: a task's effect A - B (its units aggregated as the claim
    says, interval from the claim's own bootstrap replicates), or a unit's or sweep setting's."""

    label: str
    effect: float | None
    low: float | None = None
    high: float | None = None
    n_units: int = 0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim's (or one unit's) outcome; ``effect`` is A - B aggregated as the claim says, with its
    hierarchical-bootstrap interval, raw and Holm-adjusted p-values (Holm over every claim of the
    file that has a p-value) and minimum detectable effect (:mod:`leaderboard.inference`)."""

    claim: str
    status: str
    required: bool
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    se: float | None = None
    mde: float | None = None
    resolution: str = ""  # "below resolution": inconclusive, the interval lies within +-MDE
    n_tasks: int = 0
    n_seeds: int = 0
    n_units: int = 0
    n_excluded: int = 0  # (board, seed) pairings dropped because a side's student is degenerate
    note: str = ""
    units: tuple[Verdict, ...] = ()
    label: str = ""  # the unit (board / set) or the sweep setting this verdict is about
    parts: tuple[Part, ...] = ()  # per task (or unit / setting), in order: the forest plot's rows
    kd_gain: Verdict | None = None  # claims against kd's student: kd against ce on the same units

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["units"] = [u.to_dict() for u in self.units]
        out["kd_gain"] = self.kd_gain and self.kd_gain.to_dict()
        return out

    @property
    def shown_status(self) -> str:
        return f"{self.status} ({self.resolution})" if self.resolution else self.status


@dataclasses.dataclass(frozen=True)
class Cell:
    """A board's set with both sides: the entries of each side by seed (degenerate pairings dropped)."""

    board: Board
    set_id: str
    seeds: tuple[int, ...]
    a: dict[int, dict[str, Any]]
    b: dict[int, dict[str, Any]]

    @property
    def label(self) -> str:
        return f"{self.board.label} / {self.set_id}"


def check(claims: Iterable[ClaimSpec], results: Results, *, progress: bool = False) -> list[Verdict]:
    """The verdict of every claim on ``results``, with Holm's adjustment over the file's p-values.
    ``progress``: a bar over the claims on stderr (one claim over a whole suite's sets takes minutes)."""
    from tqdm.auto import tqdm

    grouped = boards(results.entries)
    verdicts = []
    bar = tqdm(list(claims), desc="check claims", unit="claim", disable=not progress)
    for claim in bar:
        bar.set_postfix_str(claim.id)
        verdict = _check(claim, grouped, results)
        companion = kd_gain_claim(claim)
        if companion is not None:
            verdict = dataclasses.replace(verdict, kd_gain=_check(companion, grouped, results))
        verdicts.append(verdict)
    adjusted = inference.holm([v.p_value for v in verdicts])
    return [dataclasses.replace(v, p_holm=p, note=_holm_note(v, p)) for v, p in zip(verdicts, adjusted)]


def kd_gain_claim(claim: ClaimSpec) -> ClaimSpec | None:
    """The comparison of ``kd`` with ``ce`` on the units of a claim against kd's student (None for others)."""
    if claim.b.method != "kd" or claim.b.role != "student" or claim.a.role != "student":
        return None
    return dataclasses.replace(
        claim, id=f"{claim.id}:kd-gain", a=Side("kd", variant=claim.b.variant), b=Side("ce", variant=claim.b.variant),
        robust=None, required=False, description=f"kd against ce on the units of {claim.id}",
    )


def _holm_note(v: Verdict, p_holm: float | None) -> str:
    if v.status == "holds" and p_holm is not None and v.p_value is not None and p_holm >= 0.05 > v.p_value:
        return "; ".join(filter(None, [v.note, "not significant after Holm's adjustment"]))
    return v.note


def _check(claim: ClaimSpec, grouped: dict, results: Results) -> Verdict:
    if claim.robust is None:
        return _verdict(claim, claim.a, grouped, results)
    methods = sorted({m for per_method in grouped.values() for m in per_method if fnmatch.fnmatchcase(m, claim.a.method)})
    settings = [dataclasses.replace(_verdict(claim, dataclasses.replace(claim.a, method=m), grouped, results), label=m) for m in methods]
    base = Verdict(claim.id, "inconclusive", claim.required, n_units=len(settings), units=tuple(settings))
    if not settings:
        return dataclasses.replace(base, note=f"no method matches {claim.a.method!r}")
    share = {s: sum(v.status == s for v in settings) / len(settings) for s in STATUSES}
    status = "holds" if share["holds"] >= claim.robust else "fails" if share["fails"] > 1 - claim.robust else "inconclusive"
    note = f"holds for {share['holds']:.0%} of {len(settings)} settings (needs {claim.robust:.0%}), fails for {share['fails']:.0%}"
    effects = [v.effect for v in settings if v.effect is not None]
    if effects:
        note += f"; the settings' effects range from {min(effects):+.4f} to {max(effects):+.4f}"
    parts = tuple(Part(v.label, v.effect, v.low, v.high, v.n_units) for v in settings)
    return dataclasses.replace(
        base, status=status, note=note, parts=parts, n_tasks=max(v.n_tasks for v in settings),
        n_seeds=max(v.n_seeds for v in settings), n_excluded=max(v.n_excluded for v in settings),
    )


def _cells(claim: ClaimSpec, a: Side, grouped: dict, results: Results) -> tuple[list[Cell], int]:
    """Every (board, set) with both sides, and the number of (board, seed) pairings dropped because
    a side's student is degenerate. Teachers count once: cells whose sides are the same trained
    models (a teacher is shared by every student and protocol of its task) are kept once."""
    cells, seen, dropped = [], set(), set()
    for board, per_method in grouped.items():
        if (claim.tasks and board.task not in claim.tasks) or (claim.protocols and board.protocol not in claim.protocols):
            continue
        if claim.students and board.student not in claim.students:
            continue
        if a.method not in per_method or claim.b.method not in per_method:
            continue
        for set_id in _expand_sets(claim.sets, per_method[a.method]):
            sides = [{e["cell"]["seed"]: e for e in per_method[side.method] if set_id in e["sets"]} for side in (a, claim.b)]
            seeds = sorted(set(sides[0]) & set(sides[1]))
            bad = {s for s in seeds if any(side.role == "student" and _degenerate(by_seed[s], results) for side, by_seed in zip((a, claim.b), sides))}
            dropped |= {(board, s) for s in bad}
            seeds = tuple(s for s in seeds if s not in bad)
            if not seeds:
                continue
            key = (set_id, *(_identity(side, board, by_seed[seeds[0]]) for side, by_seed in zip((a, claim.b), sides)))
            if key in seen:
                continue
            seen.add(key)
            cells.append(Cell(board, set_id, seeds, sides[0], sides[1]))
    return cells, len(dropped)


ANY_VERSION = "@*"  # SHIFT@*/SEVERITY: a claim that outlives a shift's version bump


def _expand_sets(selectors: tuple[str, ...], entries: list[dict[str, Any]]) -> list[str]:
    """Set ids for selectors: an id as is, ``family:NAME`` as every set of that family with labels
    (labelled sets and subsets, each severity on its own), ``SHIFT@*/SEVERITY`` as that set in every
    version present."""
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
        elif ANY_VERSION + "/" in selector:
            name, _, severity = selector.partition(ANY_VERSION + "/")
            out += [s for s in present if re.fullmatch(rf"{re.escape(name)}@v\d+/{re.escape(severity)}", s)]
        else:
            out.append(selector)
    return list(dict.fromkeys(out))


def _identity(side: Side, board: Board, entry: dict[str, Any]) -> tuple:
    """Which trained models a side stands for: a teacher by (suite, task, recipe, architecture)."""
    if side.role == "teacher":
        teacher = entry.get("teacher") or {}
        return ("teacher", board.suite, board.task, teacher.get("recipe"), entry["specs"]["teacher_arch"], side.variant)
    return ("student", board, side.method, side.variant)


def _degenerate(entry: dict[str, Any], results: Results) -> bool:
    """The record's flag when the entry carries one, else the clean predictions' majority share."""
    for holder in (entry, entry.get("training") or {}):
        if isinstance(holder.get("degenerate"), bool):
            return holder["degenerate"]
    return is_degenerate(results.predictions(entry)["clean/probs"])


def _verdict(claim: ClaimSpec, a: Side, grouped: dict, results: Results) -> Verdict:
    cells, excluded = _cells(claim, a, grouped, results)
    base = Verdict(claim.id, "inconclusive", claim.required, n_units=len(cells), n_excluded=excluded)
    if not cells:
        return dataclasses.replace(base, note="no unit to test: no board holds both sides on these sets" + _excluded_note(excluded))
    if claim.test == "sign-test":
        return _sign_verdict(claim, a, cells, base)
    units, problems = [], []
    for cell in cells:
        unit = _unit(claim, a, cell, results)
        (problems if isinstance(unit, str) else units).append(unit)
    if not units:
        return dataclasses.replace(base, note=f"{problems[0]}" + _excluded_note(excluded))
    base = dataclasses.replace(base, n_units=len(units))
    if claim.aggregate == "each" and len(units) > 1:
        parts = tuple(dataclasses.replace(_decide(claim, a, [u], base), label=u.label) for u in units)
        statuses = {p.status for p in parts}
        status = "fails" if "fails" in statuses else "holds" if statuses == {"holds"} else "inconclusive"
        effects = [p.effect for p in parts if p.effect is not None]
        return dataclasses.replace(
            base, status=status, units=parts, effect=float(np.mean(effects)) if effects else None, n_tasks=len({u.task for u in units}),
            n_seeds=min(p.n_seeds for p in parts), note=f"{sum(p.status == 'holds' for p in parts)} of {len(parts)} units hold" + _excluded_note(excluded),
            parts=tuple(Part(p.label, p.effect, p.low, p.high, 1) for p in parts),
        )
    verdict = _decide(claim, a, units, base)
    return dataclasses.replace(verdict, note="; ".join(filter(None, [verdict.note, _excluded_note(excluded).lstrip("; ")])))


def _excluded_note(excluded: int) -> str:
    return f"; {excluded} (board, seed) pairing(s) excluded: a degenerate student" if excluded else ""


def _unit(claim: ClaimSpec, a: Side, cell: Cell, results: Results) -> inference.Unit | str:
    """The bootstrap unit of a cell: both sides' predictions per seed and the rows' clusters."""
    preds, labels, segments, blocks = [], None, None, None
    for side, by_seed in ((a, cell.a), (claim.b, cell.b)):
        variant = side.variant or claim.variant
        per_seed = []
        for s in cell.seeds:
            entry = by_seed[s]
            arrays = results.predictions(entry)
            if side.role == "teacher":
                if TEACHER_PROBS not in arrays:
                    return f"{entry_format.stem(entry['cell'])} stores no teacher predictions ({TEACHER_PROBS}); compare teachers with test: sign-test"
                if variant != "raw":
                    return "teacher predictions are compared raw only (the teacher's post-hoc temperature is not stored)"
                p, y = arrays[TEACHER_PROBS], arrays["clean/labels"]
            else:
                stacked = stack_seeds([(arrays, entry)], cell.set_id, variant)
                if stacked.problem:
                    return stacked.problem
                p, y = stacked.probs[0], stacked.labels
            if labels is not None and not np.array_equal(labels, y):
                return f"{cell.label}: the two sides (or seeds) were scored on different examples"
            labels = y
            per_seed.append(Predictions.of(p, y))
            if segments is None:
                segments, blocks = inference.segments_of(arrays, cell.set_id, entry["shifts"])
        preds.append(tuple(per_seed))
    return inference.Unit(f"{cell.board.suite}/{cell.board.task}", cell.board.label, cell.label, cell.seeds, segments, blocks, preds[0], preds[1])


def _decide(claim: ClaimSpec, a: Side, units: list[inference.Unit], base: Verdict) -> Verdict:
    """One hierarchical bootstrap over ``units``, and the verdict it gives."""
    base = dataclasses.replace(base, n_units=len(units), label=units[0].label if len(units) == 1 else "")
    seeds = sorted({s for u in units for s in u.seeds})
    if len(seeds) < claim.min_seeds:
        return dataclasses.replace(base, n_seeds=len(seeds), note=f"{len(seeds)} seed(s), the claim needs {claim.min_seeds}")
    spec = MetricSpec.from_id(claim.metric)
    seed = int(content_hash((claim.id, str(a), claim.aggregate, [u.label for u in units]), 8), 16) >> 1
    bad_sign = 1.0 if claim.direction == "lower" else -1.0
    aggregate = claim.aggregate if claim.aggregate != "each" else "mean"
    reps = inference.replicates(spec, units, seed=seed, n_resamples=claim.n_resamples)
    est = inference.estimate(reps, aggregate, level=claim.level, bad_sign=bad_sign)
    parts = []
    for task in dict.fromkeys(u.task for u in units):  # each task from the same replicates: deterministic, no new draws
        only = [i for i, u in enumerate(units) if u.task == task]
        one = inference.estimate(reps, aggregate, level=claim.level, bad_sign=bad_sign, only=only)
        parts.append(Part(task, one.effect, one.low, one.high, len(only)))
    status, resolution = inference.decide(est.low, est.high, est.mde, claim.direction)
    note = "" if status != "inconclusive" else "the interval straddles zero" + (" within the resolution (±MDE)" if resolution else "")
    if est.n_dropped:
        note = "; ".join(filter(None, [note, f"{est.n_dropped} replicate(s) drew no example of a set"]))
    return dataclasses.replace(
        base, status=status, resolution=resolution, effect=est.effect, low=est.low, high=est.high, p_value=est.p_value,
        se=est.se, mde=est.mde, n_tasks=est.n_tasks, n_seeds=est.n_seeds, note=note, parts=tuple(parts),
    )


def _sign_verdict(claim: ClaimSpec, a: Side, cells: list[Cell], base: Verdict) -> Verdict:
    """Sign test over (task, seed) pairs of the stored numbers (each task's units averaged per seed)."""
    pairs: dict[tuple[str, int], list[float]] = {}
    for cell in cells:
        for s in cell.seeds:
            d = _stored(cell.a[s], a, cell.set_id, claim) - _stored(cell.b[s], claim.b, cell.set_id, claim)
            pairs.setdefault((cell.board.task, s), []).append(d)
    seeds = sorted({s for _, s in pairs})
    tasks = sorted({t for t, _ in pairs})
    per_task = [np.mean([np.mean(v) for (t, _), v in pairs.items() if t == task]) for task in tasks]
    suites = {c.board.task: c.board.suite for c in cells}
    parts = tuple(Part(f"{suites[t]}/{t}", float(e), n_units=sum(c.board.task == t for c in cells)) for t, e in zip(tasks, per_task))
    base = dataclasses.replace(base, effect=float(np.mean(per_task)), n_seeds=len(seeds), n_tasks=len(tasks), parts=parts)
    if len(seeds) < claim.min_seeds:
        return dataclasses.replace(base, note=f"{len(seeds)} seed(s), the claim needs {claim.min_seeds}")
    diffs = np.array([np.mean(v) for v in pairs.values()])
    wins, losses, p = inference.sign_test(diffs, -1.0 if claim.direction == "lower" else 1.0)
    status = "inconclusive" if p >= 1 - claim.level else "holds" if wins > losses else "fails"
    note = f"{wins} of {len(diffs)} (task, seed) pairs in the claimed direction, {losses} against"
    floor = 2 * 0.5 ** len(diffs)
    if floor >= 1 - claim.level:
        note += f"; with {len(diffs)} pairs a sign test cannot reach p < {1 - claim.level:.2g} (its smallest p is {floor:.2g})"
    return dataclasses.replace(base, status=status, p_value=p, note=note + _excluded_note(base.n_excluded))


def _stored(entry: dict[str, Any], side: Side, set_id: str, claim: ClaimSpec) -> float:
    metrics = entry_format.set_metric_ids(entry, set_id)
    if claim.metric not in metrics:
        raise CudBenchError(f"claim {claim.id!r}: metric {claim.metric!r} is not stored for set {set_id!r}; stored: {', '.join(metrics)}")
    variant = side.variant or claim.variant
    if side.role == "teacher":
        if not (entry.get("teacher") or {}).get("clean"):
            raise CudBenchError(f"claim {claim.id!r}: {entry_format.stem(entry['cell'])} has no teacher scores (method {side.method!r})")
        return entry["teacher"]["clean"][variant][metrics.index(claim.metric)]
    return entry["sets"][set_id][variant][metrics.index(claim.metric)]


# -- reports ---------------------------------------------------------------------------


def exit_code(verdicts: list[Verdict]) -> int:
    """0 when every required claim holds, else 1 (a required claim that fails or is inconclusive)."""
    return int(any(v.required and v.status != "holds" for v in verdicts))


def to_markdown(verdicts: list[Verdict], claims: list[ClaimSpec], source: str) -> str:
    by_id = {c.id: c for c in claims}
    gains = any(v.kd_gain is not None for v in verdicts)  # the column only where a claim is against kd
    lines = [
        f"Claims checked on {source}. Effect = A - B, per task the mean over its units (or each side's worst set), "
        "then the mean over tasks; interval and p from one hierarchical bootstrap per claim (seeds and each task's "
        "test examples resampled once per task, shared by every unit) or a sign test over (task, seed) pairs; Holm p adjusts "
        "over every claim of this file; MDE = (q(1-a/2) + q(0.8)) x SE (t quantiles; about 2.8 SE), the effect detected "
        "with power 0.8; inconclusive (below resolution): the interval lies within ±MDE; "
        "excluded = (board, seed) pairings with a degenerate student; `required` claims must hold."
        + (" KD gain: kd's student against ce's on the claim's units, in the claim's direction and metric (does "
           "distillation itself help there?)." if gains else ""),
        "",
        "| claim | A vs B | metric | verdict | effect | 95% interval | p | Holm p | MDE | tasks | seeds | units | excluded | note |"
        + (" KD gain (kd - ce, same units) |" if gains else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if gains else ""),
    ]
    for v in verdicts:
        c = by_id[v.claim]
        gain = ""
        if gains:
            g = v.kd_gain
            gain = " — |" if g is None else f" {g.shown_status}: {_fmt(g.effect)} {_interval(g)} |"
        lines.append(
            f"| {v.claim}{' (required)' if v.required else ''} | {c.a} {c.direction} than {c.b} | {c.metric} ({c.variant}, {c.aggregate}) "
            f"| **{v.shown_status}** | {_fmt(v.effect)} | {_interval(v)} | {_fmt(v.p_value, '.3g')} | {_fmt(v.p_holm, '.3g')} "
            f"| {_fmt(v.mde, '.4f')} | {v.n_tasks} | {v.n_seeds} | {v.n_units} | {v.n_excluded} | {v.note} |{gain}"
        )
    return "\n".join(lines) + "\n"


def _interval(v: Verdict) -> str:
    return f"[{v.low:+.4f}, {v.high:+.4f}]" if v.low is not None else "—"


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
    numerics_mode: str = "native",
    progress: bool = False,
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
        run_suite(spec, runs, jobs=jobs, numerics_mode=numerics_mode)
        found = Results.from_records(Path(runs) / spec.name / "records")
    else:
        found = Results.from_records(Path(results))
    return claims, check(claims, found, progress=progress), found.source


def write_reports(claims: list[ClaimSpec], verdicts: list[Verdict], source: str, out: Path, stem: str) -> list[Path]:
    """``<out>/<stem>.json`` and ``<out>/<stem>.md``, written atomically."""
    from cud_bench.io import write_bytes_atomic

    paths = [Path(out) / f"{stem}.json", Path(out) / f"{stem}.md"]
    write_bytes_atomic(paths[0], to_json(verdicts, source).encode())
    write_bytes_atomic(paths[1], to_markdown(verdicts, claims, source).encode())
    return paths
