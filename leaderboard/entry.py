"""The leaderboard entry: one cell's scores, recomputable from its stored predictions.

An entry is built from a runner record (:mod:`cud_bench.records`) and its
``.npz`` of float16 per-example probabilities. Its scores are **computed from
those stored predictions**, by the runner's own scoring functions, not copied
from the record (which scored float32 logits): so anyone holding a release can
recompute every committed number (:func:`score_predictions`), and CI does
(:func:`leaderboard.release.verify`). Since scoring version 2 the runner scores
the same float16 probabilities it stores, so record and entry agree exactly. Since
schema 3 a release stores the sets of a summarised family (the corruptions) as per-row
summaries (:func:`compact`, :mod:`cud_bench.summaries`), which the runner also scores
them from: 50 corrupted sets of 300 texts per cell would otherwise make release 2.0
ten times the size a repository should hold (docs/release-2.0.md).

Entry layout (``schema_version`` 3; ``schema/entry-v3.json`` is the normative
field-by-field description, and every file is validated against it)::

    schema_version  3
    scoring         the scoring version the scores were computed with
                    (:data:`cud_bench.metrics.SCORING_VERSION`; schema-1 entries read as 1)
    cell            {suite, task, method, seed, protocol, student}: the cell's key
    specs           {task, method, suite, teacher_arch, student_arch}: spec hashes (12 hex);
                    "suite" hashes the suite's settings only (see SUITE_SELECTION_FIELDS)
    task            {id: "rt-polarity@v1", subset: the runner's caps on the splits}
    shifts          {shift id: {hash, family, kind}} for every shift scored
    temperature     post-hoc temperature, fitted by the runner on clean validation data (re-fitted: below)
    metrics         {"classification": [metric id], "detection": [metric id], "summary":
                    [metric id] (when a set is summarised)}: the order of the values in each
                    set's "raw" and "ts" arrays (:func:`set_metric_ids`)
    sets            {set id: {kind, n, stored: "summary" (summarised sets only), raw: [value],
                    ts: [value]}}; set ids are "clean",
                    "<shift id>/<severity>" and "pool/<family>" (every labelled set of a
                    family, concatenated); values rounded to DECIMALS places
    predictions     {file: path in the release, sha256: of the packed .npz bytes (pack_predictions),
                    teacher: {file, sha256} of the teacher's arrays, a file shared by every cell
                    trained from that teacher (absent without teacher arrays; split_parts)}
    teacher         {recipe, train_accuracy, targets: {rows_changed, temperature, accuracy,
                    mean_confidence}, temperature: the teacher's post-hoc temperature (absent
                    in entries made before it was kept), clean: {raw, ts} in the order of
                    metrics.classification, train_examples_per_s} or null

Recomputed on import and by ``verify`` (:func:`recheck`), where the predictions hold what it
takes (records since benchmark 2.0.0 hold the teacher's clean test probabilities, and newer
ones the validation logits; see :mod:`cud_bench.records`): every set's scores; the teacher's
clean scores (``teacher/clean/probs``, scored like a student's); the student's ``temperature``,
the teacher's ``temperature`` and ``targets.temperature`` re-fitted from the stored validation
logits (:func:`cud_bench.calibration.refit_problem`). What an entry's predictions lack is
counted and reported, never silently passed.
    training        the student's {best_epoch, epochs_run, selection_rule} or null
    provenance      the record's provenance (code version, git commit, libraries, hardware,
                    wall time), copied as is
    replaces        optional [{previous: sha256 of the replaced entry file, reason}], oldest first

Dropped from the record to keep a release small: per-epoch training history,
the teacher's shift scores, the corruption summary (derived from the sets),
full spec bodies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema
import numpy as np

from cud_bench.errors import CudBenchError
from cud_bench.metrics import SCORING_VERSION
from cud_bench.records import SUITE_SELECTION_FIELDS, suite_settings_hash  # noqa: F401  (one home: resume uses them too)

SCHEMA_VERSION = 3
DECIMALS = 4  # stored scores are rounded to this many places: 0.01 percentage points
CLEAN = "clean"
POOL = "pool"
POOLED_KINDS = ("labelled",)  # subsets overlap and out-of-scope sets have no labels: never pooled
VARIANTS = ("raw", "ts")  # the model's own probabilities; after post-hoc temperature scaling
SCORING = {"labelled": "classification", "subset": "classification", "out-of-scope": "detection"}
# Stored and recomputed scores are both rounded to DECIMALS places; floating-point noise
# from another platform's summation order can move a rounding by one unit, no more.
TOLERANCE = 1.01 * 10.0**-DECIMALS
# Prediction keys beyond the sets (cud_bench.records documents them):
TEACHER_PROBS = "teacher/clean/probs"
VALIDATION_LOGITS, VALIDATION_LABELS = "validation/logits", "validation/labels"
TEACHER_VALIDATION_LOGITS = "teacher/validation/logits"
FLOAT_SUFFIXES = ("/probs", "/logits")  # (n, C) float16 arrays
# A summarised set (cud_bench.summaries) keeps <set>/predicted (integers) and <set>/confidence:
# (n, 2) uint8 confidence cells, raw and after TS. Every other array holds integers.
SUMMARY, PREDICTED, CONFIDENCE = "summary", "predicted", "confidence"
TEACHER = "teacher"  # the prefix of the teacher's arrays, stored as a part of their own (split_parts)


def fold_logits_key(fold: int) -> str:
    """Fold teacher ``fold``'s stored validation logits (cross-fit targets with a fitted temperature)."""
    return f"teacher/fold/{fold}/validation/logits"


def stem(cell: dict[str, Any]) -> str:
    """File-name stem of a cell, unique within a release (suite first: a release may hold several).

    The schema limits cell names to file-name characters."""
    parts = [cell["suite"], cell["task"], cell["method"], cell["student"], cell["protocol"]]
    return "__".join(parts) + f"__seed{cell['seed']}"


def predictions_file(cell: dict[str, Any], sha256: str, part: str = "cell") -> str:
    """Where a cell's predictions live in a release: named by suite, task and content, so a
    replacement never overwrites the file the previous entry points at, and cells with the
    same predictions (``ce`` ignores the target protocol) share one file. The teacher's arrays
    are a part of their own (``part="teacher"``), shared by every cell trained from that
    teacher (both students, every method of the same teacher recipe)."""
    kind = "" if part == "cell" else f"__{part}"
    return f"predictions/{cell['suite']}__{cell['task']}{kind}-{sha256[:12]}.npz"


def prediction_files(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(file, sha256) of every part of an entry's predictions: the cell's, then its teacher's."""
    parts = [entry["predictions"], *([entry["predictions"][TEACHER]] if TEACHER in entry["predictions"] else [])]
    return [(p["file"], p["sha256"]) for p in parts]


def split_parts(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The release's parts of a cell's arrays: {"cell": its own, "teacher": the teacher's
    ``teacher/...`` arrays (absent when it has none)}."""
    teacher = {k: v for k, v in arrays.items() if k.startswith(TEACHER + "/")}
    return {"cell": {k: v for k, v in arrays.items() if k not in teacher}, **({TEACHER: teacher} if teacher else {})}


def predictions_of(cell: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """An entry's ``predictions`` field for the release's ``arrays`` of ``cell``, and the packed
    bytes of each file it names."""
    field: dict[str, Any] = {}
    data = {}
    for part, part_arrays in split_parts(arrays).items():
        packed = pack_predictions(part_arrays)
        sha = hashlib.sha256(packed).hexdigest()
        named = {"file": predictions_file(cell, sha, part), "sha256": sha}
        if part == "cell":
            field.update(named)
        else:
            field[part] = named
        data[named["file"]] = packed
    return field, data


def from_record(record: dict[str, Any], predictions_path: Path) -> dict[str, Any]:
    """The entry for a runner record whose predictions are the ``.npz`` at ``predictions_path``."""
    student = record["student"]
    shift_info = _shift_info(record)
    arrays = compact(read_predictions(predictions_path), student["clean"]["temperature"], shift_info)
    predictions, _ = predictions_of(record["cell"], arrays)  # what the release will store (release_arrays)
    metrics, sets = score_predictions(arrays, student["clean"]["temperature"], shift_info)
    _check_sizes(student, sets, predictions_path)
    specs = record["specs"]
    teacher = record.get("teacher")
    entry = {
        "schema_version": SCHEMA_VERSION,
        "scoring": SCORING_VERSION,
        "cell": record["cell"],
        "specs": {
            "task": specs["task"]["hash"],
            "method": specs["method"]["hash"],
            "suite": suite_settings_hash(specs["suite"]["spec"]),
            "teacher_arch": specs["teacher_arch"]["hash"],
            "student_arch": specs["student_arch"]["hash"],
        },
        "task": {"id": specs["task"]["id"], "subset": specs["task"]["subset"]},
        "shifts": shift_info,
        "temperature": student["clean"]["temperature"],
        "metrics": metrics,
        "sets": sets,
        "predictions": predictions,
        "teacher": teacher and _teacher(teacher, metrics["classification"]),
        "training": {k: record["training"][k] for k in ("best_epoch", "epochs_run", "selection_rule")},
        "provenance": record["provenance"],
    }
    found = recheck(entry, arrays)
    if found.problems:
        raise CudBenchError(
            f"record of {stem(record['cell'])} ({predictions_path}): its numbers are not what its predictions give; refusing it:\n  "
            + "\n  ".join(found.problems)
        )
    return entry


def _teacher(teacher: dict[str, Any], metric_ids: list[str]) -> dict[str, Any]:
    clean = teacher["clean"]
    return {
        **{k: teacher[k] for k in ("recipe", "train_accuracy", "targets")},
        **({"temperature": clean["temperature"]} if "temperature" in clean else {}),  # records always have it; old fixtures may not
        "clean": {v: [round(float(clean[v][m]), DECIMALS) for m in metric_ids] for v in VARIANTS},
        "train_examples_per_s": round(float(teacher["training"]["train_examples_per_s"]), 1),
    }


@dataclasses.dataclass
class Recheck:
    """What :func:`recheck` found for one entry: numbers re-checked, problems, and what could not be
    re-checked (one line each, saying what and why)."""

    checked: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    not_rechecked: list[str] = dataclasses.field(default_factory=list)


def recheck(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Recheck:
    """Recompute, from the entry's predictions, the numbers a record reports besides the sets' scores:
    the student's post-hoc temperature, the teacher's clean scores (the students' scoring path,
    :func:`cud_bench.scoring.scores`), the teacher's temperature and the targets' temperature."""
    from cud_bench.calibration import REFIT_RTOL, fit_temperature, refit_problem

    out = Recheck()
    labels = arrays.get(VALIDATION_LABELS)

    def refit(what: str, T: Any, key: str) -> None:
        if key not in arrays or labels is None:
            out.not_rechecked.append(f"{what}: no {key} stored (records before it was kept)")
            return
        out.checked += 1
        why = refit_problem(T, arrays[key], labels)
        if why:
            out.problems.append(f"{what}: {why}")

    refit("student temperature", entry["temperature"], VALIDATION_LOGITS)
    teacher = entry.get("teacher")
    if teacher is None or "clean" not in teacher:
        return out
    recomputed = teacher_scores(entry, arrays)
    if recomputed is None:
        out.not_rechecked.append(f"teacher scores: no {TEACHER_PROBS} stored (records before benchmark 2.0.0)")
    for variant, values in (recomputed or {}).items():
        for metric, stored, again in zip(entry["metrics"]["classification"], teacher["clean"][variant], values, strict=True):
            out.checked += 1
            if abs(stored - again) > TOLERANCE:
                out.problems.append(f"teacher clean {variant} {metric}: stored {stored!r}, recomputed {again!r}")
    if "temperature" not in teacher:
        out.not_rechecked.append("teacher temperature and teacher ts scores: the entry keeps no teacher temperature (made before it was kept)")
    else:
        refit("teacher temperature", teacher["temperature"], TEACHER_VALIDATION_LOGITS)
    target_T = teacher["targets"]["temperature"]
    if target_T is None:
        return out
    if entry["cell"]["protocol"] != "cross-fit":
        refit("targets temperature", target_T, TEACHER_VALIDATION_LOGITS)
        return out
    folds = []
    while fold_logits_key(len(folds)) in arrays:
        folds.append(arrays[fold_logits_key(len(folds))])
    if not folds or labels is None:
        out.not_rechecked.append("targets temperature (cross-fit): no fold teachers' validation logits stored (records before they were kept)")
        return out
    out.checked += 1
    mean = float(np.mean([fit_temperature(z.astype(np.float64), labels, split="validation") for z in folds]))
    if not (isinstance(target_T, (int, float)) and abs(target_T / mean - 1) <= REFIT_RTOL):
        out.problems.append(
            f"targets temperature: {target_T!r} is not the mean of the fold teachers' temperatures their stored validation "
            f"logits give ({mean:.6g}; tolerance {REFIT_RTOL:g} relative)"
        )
    return out


def teacher_scores(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, list[float]] | None:
    """The teacher's clean-test scores recomputed from ``teacher/clean/probs`` for the entry's
    classification metrics: {"raw": [...], "ts": [...] (with the entry's teacher temperature)},
    rounded to DECIMALS places; None when the teacher's predictions are not stored."""
    from cud_bench.scoring import scores
    from cud_bench.specs import MetricSpec

    teacher = entry.get("teacher") or {}
    if TEACHER_PROBS not in arrays:
        return None
    metric_ids = entry["metrics"]["classification"]
    T = teacher.get("temperature")
    result = scores(arrays[TEACHER_PROBS], arrays["clean/labels"], 1.0 if T is None else T, [MetricSpec.from_id(m) for m in metric_ids])
    return {v: [round(float(result[v][m]), DECIMALS) for m in metric_ids] for v in (VARIANTS if T is not None else ("raw",))}


def score_predictions(
    arrays: dict[str, np.ndarray],
    temperature: float,
    shifts: dict[str, dict[str, str]],
    metric_ids: dict[str, list[str]] | None = None,
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Every set's scores, raw and after ``temperature``, from stored predictions.

    ``arrays`` has the runner's keys (``clean/probs``, ``clean/labels``,
    ``shift/<id>/<severity>/probs|labels|rows``, or a summarised set's
    ``predicted|confidence``, :func:`compact`); each set is scored as it is stored, by the
    runner's own functions
    (:mod:`cud_bench.scoring`, :mod:`cud_bench.summaries`). ``metric_ids`` names the
    classification and summary metric ids to compute (default: the standard ones; an existing
    entry's own lists when it is verified or re-scored). Returns (metric ids per scoring,
    sets), values rounded to ``DECIMALS`` places.
    """
    from cud_bench import summaries
    from cud_bench.metrics import STANDARD_SPECS
    from cud_bench.scoring import ood_scores, scores  # heavy (torch): only when scoring
    from cud_bench.specs import MetricSpec

    def specs(scoring: str, default: tuple[MetricSpec, ...]) -> list[MetricSpec]:
        ids = (metric_ids or {}).get(scoring)
        return list(default) if ids is None else [MetricSpec.from_id(m) for m in ids]

    computed, summarised = {}, {}
    for set_id in set_ids(arrays, shifts):
        kind = set_kind(set_id, shifts)
        if kind == "out-of-scope":
            computed[set_id] = ood_scores(arrays["clean/probs"], arrays[f"shift/{set_id}/probs"], temperature)
        elif is_summary(arrays, set_id, shifts):
            summarised[set_id] = set_summary(arrays, set_id, shifts)  # scored together below
        else:
            probs, labels = set_probs(arrays, set_id, shifts)
            computed[set_id] = scores(probs, labels, temperature, specs("classification", STANDARD_SPECS))
    together = summaries.scores_of_sets(list(summarised.values()), specs(SUMMARY, summaries.SPECS))
    computed.update({set_id: {**result, "stored": SUMMARY} for set_id, result in zip(summarised, together, strict=True)})
    computed = {set_id: {**result, "kind": set_kind(set_id, shifts)} for set_id, result in computed.items()}
    metrics: dict[str, list[str]] = {"classification": [], "detection": []}
    for result in computed.values():
        metrics[scoring_of(result)] = sorted(result["raw"])
    sets = {
        set_id: {
            "kind": r["kind"],
            "n": r["n"],
            **({"stored": r["stored"]} if "stored" in r else {}),
            **{v: [round(float(r[v][m]), DECIMALS) for m in metrics[scoring_of(r)]] for v in VARIANTS},
        }
        for set_id, r in sorted(computed.items())
    }
    return metrics, sets


def scoring_of(stored_set: dict[str, Any]) -> str:
    """Which metric list of an entry's ``metrics`` a set's values follow: "summary" for a set
    stored as per-row summaries, else the one its kind takes (:data:`SCORING`)."""
    return SUMMARY if stored_set.get("stored") == SUMMARY else SCORING[stored_set["kind"]]


def set_metric_ids(entry: dict[str, Any], set_id: str) -> list[str]:
    """The metric ids, in order, of the values an entry stores for ``set_id``."""
    return entry["metrics"][scoring_of(entry["sets"][set_id])]


def compact(arrays: dict[str, np.ndarray], temperature: float, shifts: dict[str, dict[str, str]]) -> dict[str, np.ndarray]:
    """``arrays`` with every set of a summarised family (:func:`cud_bench.summaries.summarised`)
    stored as its summary: ``<set>/probs`` replaced by ``<set>/predicted`` and
    ``<set>/confidence`` (the raw and TS cells at ``temperature``). A runner record keeps its
    corrupted sets whole; a release stores them so (docs/release-2.0.md says why)."""
    from cud_bench import summaries

    out = dict(arrays)
    for key in arrays:
        parts = key.split("/")
        if key.startswith("shift/") and key.endswith("/probs") and parts[1] in shifts:
            info = shifts[parts[1]]
            if summaries.summarised(info["family"], info["kind"]):
                summary = summaries.summarise(out.pop(key), temperature)
                prefix = key[: -len("probs")]
                out[prefix + PREDICTED], out[prefix + CONFIDENCE] = summary.predicted, summary.codes
    return out


def release_arrays(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a release stores of a runner record's ``arrays`` for ``entry`` (:func:`compact` at the
    entry's temperature): the arrays the entry's scores and sha256 were computed from."""
    return compact(arrays, entry["temperature"], entry["shifts"])


def is_summary(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> bool:
    """Whether a classification set's rows are stored as summaries (a pool: its family's sets)."""
    head, _, rest = set_id.partition("/")
    if head == POOL:
        members = set_ids_of_family(arrays, rest, shifts)
        return bool(members) and all(is_summary(arrays, s, shifts) for s in members)
    return head != CLEAN and f"shift/{set_id}/{CONFIDENCE}" in arrays


def set_ids(arrays: dict[str, np.ndarray], shifts: dict[str, dict[str, str]]) -> list[str]:
    """Every set a predictions file holds: clean, each shifted set, and a pool per family
    with labelled sets."""
    shifted = sorted({"/".join(key.split("/")[1:3]) for key in arrays if key.startswith("shift/")})
    unknown = sorted({s.split("/")[0] for s in shifted} - set(shifts))
    if unknown:
        raise CudBenchError(f"predictions hold sets of shifts {unknown}, which the record does not describe")
    families = sorted({shifts[s.split("/")[0]]["family"] for s in shifted if set_kind(s, shifts) in POOLED_KINDS})
    return [CLEAN, *shifted, *(f"{POOL}/{family}" for family in families)]


def set_kind(set_id: str, shifts: dict[str, dict[str, str]]) -> str:
    head = set_id.split("/")[0]
    return "labelled" if head in (CLEAN, POOL) else shifts[head]["kind"]


def set_probs(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, C), labels (n,)) of a classification set stored whole: clean, labelled, subset
    (rows of the clean set) or a family's pool (its labelled sets concatenated in set-id order)."""
    head, _, rest = set_id.partition("/")
    if head == CLEAN:
        return arrays["clean/probs"], arrays["clean/labels"]
    if head == POOL:
        parts = [set_probs(arrays, s, shifts) for s in set_ids_of_family(arrays, rest, shifts)]
        return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
    prefix = f"shift/{set_id}"
    if shifts[head]["kind"] == "subset":
        rows = arrays[f"{prefix}/rows"]
        return arrays["clean/probs"][rows], arrays["clean/labels"][rows]
    if f"{prefix}/probs" not in arrays:
        raise CudBenchError(f"set {set_id!r} is stored as per-row summaries, not probabilities")
    return arrays[f"{prefix}/probs"], arrays[f"{prefix}/labels"]


def set_summary(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> tuple[Any, np.ndarray]:
    """(Summary, labels (n,)) of a set stored as per-row summaries (:func:`is_summary`)."""
    from cud_bench.summaries import Summary, concatenate

    head, _, rest = set_id.partition("/")
    if head == POOL:
        parts = [set_summary(arrays, s, shifts) for s in set_ids_of_family(arrays, rest, shifts)]
        return concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
    prefix = f"shift/{set_id}"
    n_classes = arrays["clean/probs"].shape[1]
    return Summary(arrays[f"{prefix}/{PREDICTED}"], arrays[f"{prefix}/{CONFIDENCE}"], n_classes), arrays[f"{prefix}/labels"]


def variant_rows(
    arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]], temperature: float, variant: str
) -> tuple[np.ndarray, np.ndarray]:
    """(float64 rows (n, C), labels) a variant of a classification set is scored on: the stored
    probabilities raw or temperature-scaled, or a summary's rows (:meth:`Summary.rows`)."""
    from cud_bench.calibration import variant_probs

    if is_summary(arrays, set_id, shifts):
        summary, labels = set_summary(arrays, set_id, shifts)
        return summary.rows(variant), labels
    probs, labels = set_probs(arrays, set_id, shifts)
    return variant_probs(probs, temperature, variant), labels


def set_groups(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> np.ndarray:
    """(n,) bootstrap groups of a set's rows: a pool's row is grouped by its position in its own set.

    Every corruption of a task corrupts the same test examples in the same order
    (:mod:`shifts.corruption`), so position j of each corrupted set is one test
    text; its copies are drawn together. In other pools, grouping unrelated rows
    by position keeps the bootstrap valid, only a little more cautious.
    """
    head, _, rest = set_id.partition("/")
    if head != POOL:
        return np.arange(len(set_labels(arrays, set_id, shifts)))
    return np.concatenate([np.arange(len(set_labels(arrays, s, shifts))) for s in set_ids_of_family(arrays, rest, shifts)])


def set_labels(arrays: dict[str, np.ndarray], set_id: str, shifts: dict[str, dict[str, str]]) -> np.ndarray:
    """(n,) the labels of a classification set, however its rows are stored."""
    return (set_summary if is_summary(arrays, set_id, shifts) else set_probs)(arrays, set_id, shifts)[1]


def set_ids_of_family(arrays: dict[str, np.ndarray], family: str, shifts: dict[str, dict[str, str]]) -> list[str]:
    """The labelled sets of a shift family, in set-id order (the order of its pool)."""
    return [
        s
        for s in set_ids(arrays, shifts)
        if "@" in s and shifts[s.split("/")[0]]["family"] == family and set_kind(s, shifts) in POOLED_KINDS
    ]


def _shift_info(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Hash, family and kind of every shift the record scored.

    Taken from the record's ``specs.shifts`` when it has them, else from the shift
    registry of the code importing the record (the code that produced it).
    """
    recorded = record["specs"].get("shifts")
    if recorded is not None:
        return {
            sid: {"hash": s["hash"], "family": s["spec"]["family"], "kind": s["spec"]["kind"]}
            for sid, s in sorted(recorded.items())
        }
    from shifts import get_shift

    info = {}
    for sid in sorted(record["student"]["shifts"]):
        spec = get_shift(sid).spec
        info[sid] = {"hash": spec.spec_hash(), "family": spec.family, "kind": spec.kind}
    return info


def _check_sizes(student: dict[str, Any], sets: dict[str, dict[str, Any]], path: Path) -> None:
    """The predictions must hold the sets the record scored, with the same sizes: a mismatch
    means the ``.npz`` belongs to another record."""
    expected = {CLEAN: student["clean"]["n"]}
    for shift, by_severity in student["shifts"].items():
        expected.update({f"{shift}/{sev}": s["n"] for sev, s in by_severity.items()})
    found = {set_id: s["n"] for set_id, s in sets.items() if not set_id.startswith(f"{POOL}/")}
    if found != expected:
        diff = sorted(set(found.items()) ^ set(expected.items()))
        raise CudBenchError(f"predictions {path} do not match their record (set, size) differences: {diff[:6]}")


def read_predictions(file: Path | BinaryIO, name: Path | str | None = None, part: str = "cell") -> dict[str, np.ndarray]:
    """Every array of a predictions ``.npz`` (a path or an open file called ``name``), by the
    runner's keys: the runner's layout (one member per key) or a release's packed one
    (:func:`pack_predictions`); ``part``: which part of a release's predictions the file is
    (:func:`split_parts`). An unreadable or missing file gives an error naming it."""
    path = name or file
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if set(arrays) in (set(PACKED), {*PACKED, CODES}):
            arrays = _unpack(arrays)
    except (OSError, ValueError, EOFError) as exc:
        raise CudBenchError(f"cannot read predictions {path}: {exc}") from None
    if part == TEACHER:
        if not arrays or any(not k.startswith(TEACHER + "/") for k in arrays):
            raise CudBenchError(f"teacher predictions {path} hold arrays other than the teacher's")
    elif "clean/probs" not in arrays or "clean/labels" not in arrays:
        raise CudBenchError(f"predictions {path} lack clean/probs or clean/labels")
    return arrays


# A release stores a cell's arrays packed into a few LZMA-compressed members: a hundred
# small members cost more in zip and .npy headers than the probabilities of a 2-class
# task. The float16 probabilities are stored as two byte planes (high bytes: sign and
# exponent, which repeat; low bytes: mantissa), which compress about 20% better; summaries'
# confidence cells as two planes too, the raw cells and the TS cells' difference from them
# (mod 256), which compresses about a quarter better than the TS cells themselves.
PACKED = ("names", "lengths", "probs", "ints")  # keys; rows per key; (2, rows, C) uint8; int32
CODES = "codes"  # a fifth member, only when summaries are stored (so older packs keep their bytes)


def pack_predictions(arrays: dict[str, np.ndarray]) -> bytes:
    """The release's ``.npz`` bytes for the runner's ``arrays``: every (n, C) array stacked
    into ``probs`` (float16, split into byte planes), every (n, 2) confidence-cell array into
    ``codes``, every 1-D integer array into ``ints``, in sorted key order. Lossless. The bytes
    depend on the arrays alone (fixed zip timestamps), so a re-import is recognised."""
    names = sorted(arrays)
    codes = [k for k in names if k.endswith("/" + CONFIDENCE)]
    if any(arrays[k].dtype != np.uint8 or arrays[k].ndim != 2 or arrays[k].shape[1] != 2 for k in codes):
        raise CudBenchError("cannot pack predictions: confidence cells must be (n, 2) uint8 arrays")
    floats = [k for k in names if k not in codes and arrays[k].ndim == 2]
    widths = {arrays[k].shape[1] for k in floats}
    if len(widths) != 1 or any(arrays[k].ndim == 1 and arrays[k].dtype.kind not in "iu" for k in names):
        raise CudBenchError(f"cannot pack predictions: expected (n, C) probabilities of one C and 1-D integer arrays, got {sorted(widths)}")
    members = {
        "names": np.array(names),
        "lengths": np.array([len(arrays[k]) for k in names], dtype=np.int64),
        "probs": _byte_planes(np.concatenate([arrays[k] for k in floats]).astype("<f2")),
        "ints": np.concatenate([np.zeros(0, np.int32), *(arrays[k] for k in names if arrays[k].ndim == 1)]).astype(np.int32),
    }
    if codes:
        cells = np.concatenate([arrays[k] for k in codes])
        members[CODES] = np.stack([cells[:, 0], cells[:, 1] - cells[:, 0]])  # uint8 arithmetic: mod 256
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in (*PACKED, *([CODES] if codes else [])):
            body = io.BytesIO()
            np.lib.format.write_array(body, members[key], allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), body.getvalue(), zipfile.ZIP_LZMA)
    return out.getvalue()


def _byte_planes(probs: np.ndarray) -> np.ndarray:
    """(rows, C) little-endian float16 -> (2, rows, C) uint8: low bytes, then high bytes."""
    return np.ascontiguousarray(probs.view(np.uint8).reshape(*probs.shape, 2).transpose(2, 0, 1))


def _from_byte_planes(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(planes.transpose(1, 2, 0)).view("<f2")[..., 0].astype(np.float16)


def _unpack(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    packed = {**packed, "probs": _from_byte_planes(packed["probs"])}
    if CODES in packed:
        raw, difference = packed[CODES]
        packed[CODES] = np.stack([raw, raw + difference], axis=1)  # uint8 arithmetic: mod 256
    arrays, at = {}, {"probs": 0, "ints": 0, CODES: 0}
    for name, n in zip(packed["names"].tolist(), packed["lengths"].tolist(), strict=True):
        member = "probs" if name.endswith(FLOAT_SUFFIXES) else CODES if name.endswith("/" + CONFIDENCE) else "ints"
        arrays[name] = packed[member][at[member] : at[member] + n]
        at[member] += n
    if at != {"probs": len(packed["probs"]), "ints": len(packed["ints"]), CODES: len(packed.get(CODES, ()))}:
        raise ValueError("packed predictions: lengths do not add up to the stored arrays")
    return {k: v.astype(np.int64) if v.dtype == np.int32 else v for k, v in arrays.items()}


def dumps(entry: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry: sorted keys, no whitespace, one line."""
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n").encode()


def validate(entry: Any, source: Path | str) -> None:
    """Check ``entry`` against the shipped JSON schema and the rules JSON Schema cannot say."""
    check_schema(entry, f"entry-v{SCHEMA_VERSION}.json", source)
    for set_id, s in entry["sets"].items():
        if scoring_of(s) not in entry["metrics"] or (scoring_of(s) == SUMMARY and s["kind"] != "labelled"):
            raise CudBenchError(f"{source}: set {set_id!r} is stored as a summary, which only labelled sets are, with metrics.summary")
        width = len(entry["metrics"][scoring_of(s)])
        if len(s["raw"]) != width or len(s["ts"]) != width:
            raise CudBenchError(f"{source}: set {set_id!r} has {len(s['raw'])}/{len(s['ts'])} values for {width} metrics")
        shift = set_id.split("/")[0]
        if set_id != CLEAN and shift != POOL and shift not in entry["shifts"]:
            raise CudBenchError(f"{source}: set {set_id!r} belongs to no shift listed in 'shifts'")
    for part, named in (("cell", entry["predictions"]), (TEACHER, entry["predictions"].get(TEACHER))):
        expected = named and predictions_file(entry["cell"], named["sha256"], part)
        if named and named["file"] != expected:
            raise CudBenchError(f"{source}: predictions file should be {expected!r}, got {named['file']!r}")


def check_schema(obj: Any, schema_name: str, source: Path | str) -> None:
    """One clear error naming ``source`` and the first (most relevant) violation."""
    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise CudBenchError(f"{source}: does not match the schema {schema_name} at {where}: {error.message}")


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    schema = json.loads(resources.files("leaderboard").joinpath("schema", schema_name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
