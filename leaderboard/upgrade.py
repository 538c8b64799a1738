"""Reading entries written by older versions of the leaderboard.

An entry names its layout in ``schema_version`` (absent means 0). Loading runs
the upgrade steps from that version to the current one, in memory (the file is
never rewritten), then validates the result against the current schema. A
version newer than this code is refused.

Version 0 (the first store, before target protocols, student architectures and
shifts were recorded; scores on the clean test set only, flat keys)::

    suite, task, method     str
    seed                    int
    task_version            int        the task's version (the id is task@v<version>)
    subset                  str        the split caps
    student_model           str        the student architecture preset
    spec_hashes             {task, method, suite, teacher, student}: 12-hex hashes
                            (suite: of the suite's settings, as in version 1)
    temperature             float      post-hoc temperature (clean validation data)
    results                 {"n": int, "acc", "ece", "nll", "brier",
                             "ts_acc", "ts_ece", "ts_nll", "ts_brier"}: clean test set;
                            ece is ece/uniform/15/l1
    predictions_sha256      str        sha256 of the predictions .npz
    code_version            str        cud_bench version
    git_commit              str | null

Every version-0 entry used in-sample targets (the paper's protocol, the only
one then); its teacher and training card were not recorded (null).

Version 1 is version 2 without ``scoring``: its scores were computed with
scoring version 1 (log/softmax of the stored probabilities; ties split by their
last bits), so it upgrades to ``scoring: 1``. Version 2 is version 3 without summarised
sets (``metrics.summary``, a set's ``stored``: every set of a version-2 entry is stored
whole), so it upgrades by its number alone. Upgrading a layout never changes
a number; re-scoring an entry with the current definitions is a replacement
through the store (``cud-bench leaderboard rescore``), with a reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cud_bench.errors import CudBenchError
from leaderboard.entry import CLEAN, SCHEMA_VERSION, predictions_file

V0_METRICS = {"acc": "accuracy", "brier": "brier", "ece": "ece/uniform/15/l1", "nll": "nll"}


def upgrade(entry: Any, source: Path | str) -> Any:
    """``entry`` in the current layout (unchanged if already current); not yet validated."""
    if not isinstance(entry, dict):
        raise CudBenchError(f"{source}: an entry must be a JSON object")
    version = entry.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise CudBenchError(f"{source}: schema_version must be a non-negative integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise CudBenchError(
            f"{source}: written with entry schema {version}, newer than this cud-bench reads ({SCHEMA_VERSION}); upgrade cud-bench"
        )
    for step in STEPS[version:]:
        try:
            entry = step(entry)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CudBenchError(f"{source}: not a valid version-{version} entry ({type(exc).__name__}: {exc})") from None
    return entry


def _v0_to_v1(old: dict[str, Any]) -> dict[str, Any]:
    cell = {
        "suite": old["suite"],
        "task": old["task"],
        "method": old["method"],
        "seed": old["seed"],
        "protocol": "in-sample",
        "student": old["student_model"],
    }
    hashes = old["spec_hashes"]
    results = old["results"]
    metrics = sorted(V0_METRICS.values())
    by_id = {new: name for name, new in V0_METRICS.items()}
    return {
        "schema_version": 1,
        "cell": cell,
        "specs": {
            "task": hashes["task"],
            "method": hashes["method"],
            "suite": hashes["suite"],
            "teacher_arch": hashes["teacher"],
            "student_arch": hashes["student"],
        },
        "task": {"id": f"{old['task']}@v{old['task_version']}", "subset": old["subset"]},
        "shifts": {},
        "temperature": old["temperature"],
        "metrics": {"classification": metrics, "detection": []},
        "sets": {
            CLEAN: {
                "kind": "labelled",
                "n": results["n"],
                "raw": [results[by_id[m]] for m in metrics],
                "ts": [results[f"ts_{by_id[m]}"] for m in metrics],
            }
        },
        "predictions": {"file": predictions_file(cell, old["predictions_sha256"]), "sha256": old["predictions_sha256"]},
        "teacher": None,
        "training": None,
        "provenance": {"cud_bench_version": old["code_version"], "git_commit": old["git_commit"]},
    }


def _v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    return {**old, "schema_version": 2, "scoring": 1}


def _v2_to_v3(old: dict[str, Any]) -> dict[str, Any]:
    return {**old, "schema_version": 3}  # v3 adds summarised sets; a v2 entry stores every set whole


# STEPS[v] turns a version-v entry into a version-(v + 1) one.
STEPS: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (_v0_to_v1, _v1_to_v2, _v2_to_v3)
