"""The result record: one JSON file per cell, plus its per-example predictions.

Documented field by field (``RECORD_FIELDS``) so that every stored number says
what it means and which specs produced it. A record is written only when the
whole cell is finished (atomically, predictions first), so a file that exists
is complete: an interrupted run resumes by skipping cells whose record exists
and was made with the cell's current specs (:func:`stale_reason`).

Record layout (``schema_version`` 1)::

    schema_version   int   this layout's version (upgrades live in leaderboard/)
    cell             {suite, task, method, seed, protocol, student}: the cell's key
    specs            {task, method, suite, teacher_arch, student_arch, shifts}:
                     each {"hash": ..., "spec": {...}} — the frozen specs used;
                     shifts maps every scored shift's id to its own such pair
    student          {"clean": Scores, "majority_share", "degenerate",
                      "shifts": {shift_id: {severity: Scores}}, "corruption_summary"}
    teacher          {"recipe", "clean": Scores, "majority_share", "degenerate", "shifts": ...,
                      "train_accuracy", "targets": {"rows_changed", "temperature", "accuracy",
                      "mean_confidence"}, "fold_temperatures", "training": TrainCard}
                     (null for methods without a teacher)
    training         TrainCard of the student
    predictions      file name of the .npz beside the record (float16 probabilities)

``majority_share``: the share of clean test examples whose predicted class is the most
common prediction; ``degenerate``: whether that share is at least
:data:`cud_bench.degenerate.MAJORITY_SHARE` (a one-class predictor, a failed run that
claims exclude). ``targets.temperature``: the temperature the ``temperature-scaled``
transform applied (cross-fit: the mean of ``fold_temperatures``, each fold teacher's
own, fitted on its validation logits; null otherwise). ``TrainCard``: ``best_epoch``,
``epochs_run``, ``selection_rule`` (``min-val-calibrated-nll/patience=3``: see :mod:`cud_bench.train`),
per-epoch ``history`` (train loss, validation calibrated NLL and accuracy), wall time.

Predictions (``.npz``, float16 probabilities and logits, int64 labels and rows): ``clean/probs``,
``clean/labels``; ``validation/logits`` and ``validation/labels`` (the student's clean
validation logits, each row minus its maximum (:func:`cud_bench.scoring.stored_logits`):
a release re-fits ``student.clean.temperature`` from them); ``teacher/clean/probs`` (methods
with a teacher: the full-data teacher's clean test probabilities, rows as ``clean/labels``:
a release recomputes ``teacher.clean`` from them) and ``teacher/validation/logits`` (its
validation logits, from which ``teacher.clean.temperature`` and, in-sample,
``targets.temperature`` are re-fitted); ``teacher/fold/<k>/validation/logits`` (cross-fit
targets with a fitted temperature: fold teacher k's, from which ``fold_temperatures`` and
their mean ``targets.temperature`` are re-fitted); the validation and fold arrays are absent
from records written before they were stored (the leaderboard then says what it could not
re-check, :func:`leaderboard.release.verify_release`); per scored shifted set
``shift/<id>/<severity>/``: ``probs`` and ``labels`` (labelled), plus ``rows`` when its
texts are copies of clean test rows (corruptions: position j of the set is clean row
``rows[j]``); ``rows`` (subset); ``probs`` (out-of-scope).
    provenance       {cud_bench_version, git_commit, python, libraries, hardware,
                      numerics, created, wall_s: {stage: seconds}} (below)

``Scores`` = {"raw": {metric_id: value}, "ts": {metric_id: value}, "temperature": T,
"n": examples}: ``raw`` from the model's probabilities, ``ts`` after the post-hoc
temperature fitted on clean validation data only (never refitted under shift). A set of a
summarised family (corruptions; :mod:`cud_bench.summaries`) is scored from its per-row
summary, as a release stores it: its Scores add ``"stored": "summary"`` and hold only the
metrics a summary decides (:data:`cud_bench.summaries.SPECS`); its ``probs`` are still stored whole
here (records written before summaries scored these sets from the rows; a release re-scores
every record from its predictions, so both give the same entry).
Metric ids are :class:`cud_bench.specs.MetricSpec` ids (``ece/uniform/15/l1``...).

``provenance`` says what computed the numbers (everything that changes their last
bits; see :mod:`cud_bench.numerics`)::

    hardware   {machine, processor, cpus,
                cpu: {vendor, model, flags_simd: [SIMD-relevant /proc/cpuinfo flags],
                      flags_sha256: hash of the sorted full flag list}}  (cpu values null off Linux)
    numerics   {mode: "native" | "portable" (the run's numerics mode),
                torch_cpu_capability: torch.backends.cpu.get_cpu_capability() ("AVX2", "DEFAULT"...),
                torch_threads, torch_interop_threads,
                blas: {torch: {blas, lapack, mkl, onednn} from torch.__config__.show(),
                       loaded: [{api, library, version, architecture, threads}] from threadpoolctl},
                numpy_simd: {baseline: [...], dispatch: [dispatch targets enabled on this CPU]},
                env: {var: value or null} for every variable in numerics.KERNEL_VARS}
"""


from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import cud_bench
from cud_bench.errors import CudBenchError
from cud_bench.io import atomic_path, write_json_atomic

SCHEMA_VERSION = 1
LIBRARIES = ("torch", "transformers", "datasets", "numpy", "scikit-learn", "nlpaug", "textattack")


@dataclasses.dataclass(frozen=True)
class CellKey:
    suite: str
    task: str
    method: str
    seed: int
    protocol: str
    student: str

    @property
    def stem(self) -> str:
        """File-name stem: one record per cell, readable in a directory listing."""
        return f"{self.task}__{self.method}__{self.student}__{self.protocol}__seed{self.seed}"

    def record_path(self, out_dir: Path) -> Path:
        return Path(out_dir) / self.suite / "records" / f"{self.stem}.json"


def write_record(out_dir: Path, key: CellKey, record: dict[str, Any], predictions: dict[str, np.ndarray]) -> Path:
    """Write predictions then the record, each atomically; the record's existence marks the cell done."""
    path = key.record_path(out_dir)
    pred_path = path.with_suffix(".npz")
    with atomic_path(pred_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: _compact(v) for k, v in predictions.items()})
    record = {**record, "schema_version": SCHEMA_VERSION, "cell": dataclasses.asdict(key), "predictions": pred_path.name}
    write_json_atomic(path, record)
    return path


def _compact(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16) if np.issubdtype(a.dtype, np.floating) else a


def read_record(path: Path) -> dict[str, Any]:
    """Read one record; a torn or hand-broken file gives an error naming it."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CudBenchError(f"cannot read result record {path}: {exc}") from None
    if not isinstance(record, dict) or "cell" not in record:
        raise CudBenchError(f"{path} is not a cud-bench result record")
    return record


def read_predictions(record_path: Path) -> dict[str, np.ndarray]:
    record = read_record(record_path)
    pred = Path(record_path).parent / record["predictions"]
    try:
        with np.load(pred, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise CudBenchError(f"cannot read predictions {pred}: {exc}") from None


# SuiteSpec fields that select cells rather than change a cell's numbers: a run restricted
# with --tasks/--methods/--seeds stays comparable with the full run (resume, leaderboard).
SUITE_SELECTION_FIELDS = ("name", "tasks", "methods", "seeds", "protocols", "students", "description")
CHECKED_SPECS = ("task", "method", "teacher_arch", "student_arch")


def suite_settings_hash(suite_spec: dict[str, Any]) -> str:
    """Hash of the suite fields that change a cell's numbers (caps, folds, teacher, shifts...)."""
    from cud_bench.specs import content_hash

    return content_hash({k: v for k, v in suite_spec.items() if k not in SUITE_SELECTION_FIELDS})


def stale_reason(out_dir: Path, key: CellKey, expected: dict[str, str]) -> str | None:
    """Why the cell's stored record is not the cell's result now (None: it is).

    ``expected`` maps ``suite`` (see :func:`suite_settings_hash`) and each name of
    :data:`CHECKED_SPECS` to the current spec hash; a record is done only when
    it exists with its predictions, belongs to exactly this cell (a seed ``"0"``
    is not the seed ``0``) and was made with those specs.
    """
    path = key.record_path(out_dir)
    if not (path.exists() and path.with_suffix(".npz").exists()):
        return "missing"
    try:
        record = read_record(path)
        specs = record["specs"]
        stored = {name: specs[name]["hash"] for name in CHECKED_SPECS}
        stored["suite"] = suite_settings_hash(specs["suite"]["spec"])
    except (CudBenchError, KeyError, TypeError) as exc:
        return f"unreadable ({exc})"
    if record["cell"] != dataclasses.asdict(key):
        return f"written for another cell {record['cell']}"
    changed = sorted(name for name, h in expected.items() if stored.get(name) != h)
    return f"{', '.join(changed)} spec changed" if changed else None


def is_done(out_dir: Path, key: CellKey, expected: dict[str, str] | None = None) -> bool:
    """The cell's record exists (and, given ``expected`` spec hashes, was made with them)."""
    if expected is not None:
        return stale_reason(out_dir, key, expected) is None
    path = key.record_path(out_dir)
    return path.exists() and path.with_suffix(".npz").exists()


def provenance(wall_s: dict[str, float]) -> dict[str, Any]:
    """Versions, code, machine and numerics behind a record's numbers (see the module docstring)."""
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            libs[lib] = None
    return {
        "cud_bench_version": cud_bench.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "libraries": libs,
        "hardware": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "cpu": cpu_info(),
        },
        "numerics": numerics_info(),
        "wall_s": {k: round(v, 3) for k, v in wall_s.items()},
    }


SIMD_FLAG_PREFIXES = ("sse", "ssse3", "avx", "fma", "f16c", "amx", "popcnt", "bmi", "sha_ni", "vaes", "vpclmulqdq", "gfni")


@functools.cache
def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """Vendor, model name and SIMD flags of the first CPU in ``cpuinfo`` (Linux); nulls where unreadable."""
    fields: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = sorted(fields.get("flags", "").split())
    return {
        "vendor": fields.get("vendor_id"),
        "model": fields.get("model name"),
        "flags_simd": [f for f in flags if f.startswith(SIMD_FLAG_PREFIXES)] if flags else None,
        "flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest() if flags else None,
    }


def numerics_info() -> dict[str, Any]:
    """The kernels this process computes with: numerics mode, torch's ISA, BLAS libraries, threads, SIMD, env."""
    import torch

    from cud_bench import numerics

    return {
        "mode": numerics.current().name,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "blas": {"torch": _torch_blas(), "loaded": _loaded_blas()},
        "numpy_simd": _numpy_simd(),
        "env": {var: os.environ.get(var) for var in numerics.KERNEL_VARS},
    }


@functools.cache
def _torch_blas() -> dict[str, str | None]:
    """torch's BLAS/LAPACK and its MKL / oneDNN versions (linked statically, so threadpoolctl cannot see them)."""
    import torch

    config = torch.__config__.show()

    def find(pattern: str) -> str | None:
        match = re.search(pattern, config)
        return match.group(1).strip() if match else None

    return {
        "blas": find(r"BLAS_INFO=([^,\s]+)"),
        "lapack": find(r"LAPACK_INFO=([^,\s]+)"),
        "mkl": find(r"Math Kernel Library Version ([^\n]+?) for"),
        "onednn": find(r"MKL-DNN (v[^\s]+)"),
    }


def _loaded_blas() -> list[dict[str, Any]] | None:
    """Every BLAS / OpenMP library loaded now (numpy's and scipy's OpenBLAS with its kernel family, torch's OpenMP)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # not in every environment; the record then says so
        return None
    return [
        {
            "api": lib.get("internal_api"),
            "library": lib.get("prefix"),
            "version": lib.get("version"),
            "architecture": lib.get("architecture"),
            "threads": lib.get("num_threads"),
        }
        for lib in threadpool_info()
    ]


@functools.cache
def _numpy_simd() -> dict[str, list[str]]:
    """numpy's SIMD baseline and the dispatch targets it uses on this CPU (after NPY_DISABLE_CPU_FEATURES)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as umath
    enabled = umath.__cpu_features__
    return {
        "baseline": list(umath.__cpu_baseline__),
        "dispatch": [f for f in umath.__cpu_dispatch__ if enabled.get(f)],
    }


def git_commit() -> str | None:
    """The commit of the code that produced a number (with "+dirty" for local edits)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")
