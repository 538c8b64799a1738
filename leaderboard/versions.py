"""The benchmark version: a semver that must change whenever a spec changes meaning.

``leaderboard/benchmark.json`` holds the version and its *manifest*: every
registered task, shift, method, model preset and suite and every standard
metric, by id, with its spec hash (suites by the hash of their settings, so
adding a task to a suite is not a change of meaning). Comparing the manifest
with the code says what changed:

- a spec changed or disappeared: **major** bump (old numbers mean something else);
- specs were only added: **minor** bump (old numbers keep their meaning);
- nothing: the version stands.

A version is frozen once a release of it exists (``releases/<version>/``);
before that the manifest is re-recorded in place. :func:`check` (run by CI)
fails when the manifest is stale; :func:`record` (``cud-bench leaderboard
version --record``) writes the new manifest and version.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Callable

from cud_bench.errors import CudBenchError
from cud_bench.io import write_json_atomic

BENCHMARK_FILE = Path(__file__).with_name("benchmark.json")
SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
Manifest = dict[str, dict[str, str]]  # kind -> id -> spec hash


def _tasks() -> dict[str, str]:
    from cud_bench.data.tasks import tasks

    return {task.spec.id: task.spec.spec_hash() for _, task in tasks.items()}


def _shifts() -> dict[str, str]:
    from shifts import shifts

    return {shift.spec.id: shift.spec.spec_hash() for _, shift in shifts.items()}


def _methods() -> dict[str, str]:
    from cud_bench.methods import get_method, methods

    return {name: get_method(name).spec_hash() for name in methods.names()}


def _metrics() -> dict[str, str]:
    from cud_bench.metrics import STANDARD_SPECS

    return {spec.id: spec.spec_hash() for spec in STANDARD_SPECS}


def _models() -> dict[str, str]:
    from cud_bench.suites import model_presets

    return {name: build().spec.spec_hash() for name, build in model_presets.items()}


def _suites() -> dict[str, str]:
    from cud_bench.suites import suites

    from leaderboard.entry import suite_settings_hash

    return {name: suite_settings_hash(spec.to_dict()) for name, spec in suites.items()}


# What the benchmark version covers: each kind and how to read its current hashes.
KINDS: tuple[tuple[str, Callable[[], dict[str, str]]], ...] = (
    ("task", _tasks),
    ("shift", _shifts),
    ("method", _methods),
    ("metric", _metrics),
    ("model", _models),
    ("suite", _suites),
)


@dataclasses.dataclass(frozen=True)
class Change:
    """One spec that differs between two manifests; ``old``/``new`` is None when it was added/removed."""

    kind: str
    id: str
    old: str | None
    new: str | None

    def __str__(self) -> str:
        what = "added" if self.old is None else "removed" if self.new is None else f"changed {self.old} -> {self.new}"
        return f"{self.kind} {self.id}: {what}"


def current_manifest() -> Manifest:
    """The spec hashes of the code as it is now."""
    return {kind: dict(sorted(read().items())) for kind, read in KINDS}


def read_benchmark(path: Path = BENCHMARK_FILE) -> tuple[str, Manifest]:
    """The recorded (version, manifest)."""
    try:
        data = json.loads(Path(path).read_text())
        version, manifest = data["version"], data["specs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CudBenchError(f"cannot read the benchmark version file {path}: {exc}") from None
    check_semver(version, path)
    return version, manifest


def diff_manifests(old: Manifest, new: Manifest) -> list[Change]:
    """Every added, removed or changed spec, sorted by kind and id."""
    changes = []
    for kind in sorted(set(old) | set(new)):
        a, b = old.get(kind, {}), new.get(kind, {})
        changes += [Change(kind, i, a.get(i), b.get(i)) for i in sorted(set(a) | set(b)) if a.get(i) != b.get(i)]
    return changes


def required_bump(changes: list[Change]) -> str | None:
    """"major" if a spec changed or went away, "minor" if specs were only added, else None."""
    if any(c.old is not None for c in changes):
        return "major"
    return "minor" if changes else None


def bumped(version: str, level: str) -> str:
    major, minor, patch = (int(p) for p in SEMVER.match(version).groups())
    return {"major": f"{major + 1}.0.0", "minor": f"{major}.{minor + 1}.0", "patch": f"{major}.{minor}.{patch + 1}"}[level]


def check(releases_root: Path, path: Path = BENCHMARK_FILE) -> str:
    """The benchmark version, or an error listing every spec that changed since it was recorded."""
    version, recorded = read_benchmark(path)
    changes = diff_manifests(recorded, current_manifest())
    if changes:
        level = required_bump(changes)
        action = (
            f"release {version} exists, so bump the version ({level}: {bumped(version, level)})"
            if (Path(releases_root) / version).exists()
            else f"version {version} is not released yet, so re-record its manifest"
        )
        listing = "\n  ".join(str(c) for c in changes)
        raise CudBenchError(
            f"specs changed since benchmark {version} was recorded in {path}:\n  {listing}\n"
            f"{action} with `cud-bench leaderboard version --record`"
        )
    return version


def record(releases_root: Path, path: Path = BENCHMARK_FILE) -> tuple[str, list[Change]]:
    """Write the current manifest: under the next version if the recorded one is released, else in place."""
    version, recorded = read_benchmark(path)
    manifest = current_manifest()
    changes = diff_manifests(recorded, manifest)
    level = required_bump(changes)
    if level and (Path(releases_root) / version).exists():
        version = bumped(version, level)
    write_json_atomic(path, {"version": version, "specs": manifest})
    return version, changes


def check_semver(version: str, source: Path | str = "version") -> None:
    if not isinstance(version, str) or not SEMVER.match(version):
        raise CudBenchError(f"{source}: version must be semver MAJOR.MINOR.PATCH (e.g. 1.0.0), got {version!r}")
