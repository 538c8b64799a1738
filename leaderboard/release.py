"""Making a release from a run, and checking that every committed score is what its predictions say.

:func:`import_run` turns a runner output folder into entries of the release of
the current benchmark version; :func:`verify` recomputes every stored score from
the stored predictions (CI runs it on every committed release); :func:`rescore`
recomputes, through the store's replacement, the scores of entries written with
an older scoring version (:data:`cud_bench.metrics.SCORING_VERSION`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cud_bench.errors import CudBenchError
from cud_bench.records import read_record
from cud_bench.metrics import SCORING_VERSION
from leaderboard import entry as entry_format
from leaderboard import versions
from leaderboard.store import DEFAULT_ROOT, Release, create_release

TOLERANCE = entry_format.TOLERANCE


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    release: Release
    counts: dict[str, int]  # "added" / "replaced" / "unchanged" -> entries

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items())) or "no records"
        size = sum(p.stat().st_size for p in self.release.path.rglob("*") if p.is_file())
        return f"release {self.release.version} ({self.release.path}, {size / 1e6:.1f} MB): {counts}"


def import_run(
    records_dir: Path,
    version: str,
    *,
    root: Path = DEFAULT_ROOT,
    replace_reason: str | None = None,
    benchmark_file: Path = versions.BENCHMARK_FILE,
) -> ImportSummary:
    """Add every record under ``records_dir`` (``<out>/<suite>/records`` or any folder above) to release ``version``.

    ``version`` must be the current benchmark version, whose manifest must match
    the code (:func:`leaderboard.versions.check`). Every record is read and scored
    before anything is written, so a bad record changes nothing.
    """
    current = versions.check(root, benchmark_file)
    if version != current:
        raise CudBenchError(f"the current benchmark version is {current} ({benchmark_file}); cannot import into {version}")
    paths = sorted(p for p in Path(records_dir).rglob("*.json") if p.parent.name == "records")
    if not paths:
        raise CudBenchError(f"no result records (records/*.json) under {records_dir}")
    prepared = []
    for path in paths:
        record = read_record(path)
        predictions = path.parent / record.get("predictions", "")
        if not predictions.is_file():
            raise CudBenchError(f"{path}: its predictions file {predictions} is missing")
        try:
            prepared.append((entry_format.from_record(record, predictions), predictions))
        except (KeyError, TypeError) as exc:
            raise CudBenchError(f"{path} lacks a field a leaderboard entry needs ({type(exc).__name__}: {exc})") from None
    release = create_release(version, versions.read_benchmark(benchmark_file)[1], root)
    _one_numerics_mode([e for e, _ in prepared], release)
    with staged(release) as stage:  # all or nothing: one refused entry leaves the release as it was
        counts = collections.Counter(stage.add(e, p, replace_reason=replace_reason) for e, p in prepared)
    return ImportSummary(release, dict(counts))


def numerics_mode(entry: dict[str, Any]) -> str:
    """The numerics mode an entry was computed in (records before modes existed ran native)."""
    return (entry.get("provenance", {}).get("numerics") or {}).get("mode", "native")


def _one_numerics_mode(incoming: list[dict[str, Any]], release: Release) -> None:
    """A release holds one numerics mode: portable and native numbers differ in their last bits,
    so mixing them would make a rerun of half the release disagree with the other half."""
    modes = collections.Counter(numerics_mode(e) for e in incoming)
    stored = collections.Counter(numerics_mode(e) for e in release.entries())
    if len(modes | stored) > 1:
        raise CudBenchError(
            f"release {release.version} would mix numerics modes (stored: {dict(stored) or 'none'}; this import: "
            f"{dict(modes)}); a release is built in one mode: rerun with{'out' if 'native' in stored else ''} --portable"
        )


@contextlib.contextmanager
def staged(release: Release) -> Iterator[Release]:
    """A copy of ``release`` to add to; on success, switched in by one atomic write of its index.

    The release's lock is held throughout, so no other writer interleaves. The
    copy is made of hard links beside the release (its files are content-addressed
    and only ever replaced by rename, never edited). On success the new files are
    linked into the release and the staged ``index.json`` replaces the release's
    (the commit); the files only the old index named are then removed. On any
    error the copy is discarded and the release is untouched.
    """
    with release._lock():
        old_named = _named_files(release)
        tmp = Path(tempfile.mkdtemp(prefix=f".{release.version}.staging-", dir=release.path.parent))
        try:
            stage_path = tmp / release.version
            _link_tree(release.path, stage_path)
            yield Release(stage_path)
            for folder in ("entries", "predictions"):
                for path in sorted((stage_path / folder).glob("*")):
                    if not (release.path / folder / path.name).exists():
                        _link_or_copy(path, release.path / folder / path.name)
            os.replace(stage_path / "index.json", release.index_path)  # the one atomic switch
            for path in sorted(old_named - _named_files(release)):
                path.unlink(missing_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _named_files(release: Release) -> set[Path]:
    """The entry and predictions files the release's index names."""
    named = set()
    for stem, sha in release.index()["entries"].items():
        entry_path = release.entry_path(stem, sha)
        named.add(entry_path)
        try:
            named |= {release.path / f for f, _ in entry_format.prediction_files(json.loads(entry_path.read_bytes()))}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged entry: the staged add reports it
    return named


def _link_tree(src: Path, dest: Path) -> None:
    for folder in ("entries", "predictions"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for path in sorted((src / folder).glob("*")) if (src / folder).is_dir() else []:
            _link_or_copy(path, dest / folder / path.name)
    shutil.copy2(src / "index.json", dest / "index.json")


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


@dataclasses.dataclass(frozen=True)
class Verification:
    """What :func:`verify_release` checked: numbers recomputed, entries, and, per reason, how many
    entries hold numbers their predictions cannot re-check (they lack the arrays it takes)."""

    version: str
    checked: int
    entries: int
    not_rechecked: dict[str, int]

    def __str__(self) -> str:
        lines = [f"release {self.version}: {self.checked} scores and temperatures of {self.entries} entries match their predictions"]
        if self.not_rechecked:
            lines.append("not re-checked (the stored predictions lack what it takes; the numbers are as the records reported them):")
            lines += [f"  {n} entries: {why}" for why, n in sorted(self.not_rechecked.items())]
        return "\n".join(lines)


def verify(release: Release) -> int:
    """:func:`verify_release`'s count of numbers checked (raises on any problem)."""
    return verify_release(release).checked


def verify_release(release: Release) -> Verification:
    """Recompute every stored score from the stored predictions, and every teacher score and
    temperature where the predictions hold what it takes (:func:`leaderboard.entry.recheck`).

    Raises one error listing every entry file whose scores or temperatures differ (by more
    than :data:`TOLERANCE`; temperatures: :func:`cud_bench.calibration.refit_problem`) or
    whose sets are not in its predictions, and every file in the release folder that the
    index does not name. What could not be re-checked is counted in the result, by reason.
    """
    checked, problems, not_rechecked = 0, [], collections.Counter()
    index = release.index()
    entries = release.entries()
    for entry in entries:
        stem = entry_format.stem(entry["cell"])
        where = release.entry_path(stem, index["entries"][stem])
        if entry["scoring"] != SCORING_VERSION:
            problems.append(
                f"{where}: scored with scoring version {entry['scoring']}, this code scores version {SCORING_VERSION}; "
                f"re-score the release: cud-bench leaderboard rescore {release.version} --reason REASON"
            )
            continue
        arrays = release.predictions(entry)
        metrics, sets = _rescored(arrays, entry)
        n, found = _compare(entry, metrics, sets)
        again = entry_format.recheck(entry, arrays)
        checked += n + again.checked
        problems += [f"{where}: {p}" for p in found + again.problems]
        not_rechecked.update(again.not_rechecked)
    problems += [f"{p}: named by no entry of {release.index_path}, so not part of the release; delete it" for p in release.unlisted()]
    if problems:
        raise verification_error(release.version, problems)
    return Verification(release.version, checked, len(entries), dict(not_rechecked))


def verification_error(version: str, problems: list[str]) -> CudBenchError:
    """One error naming every problem, one per line: none is hidden behind "... and N more"."""
    return CudBenchError(
        f"{len(problems)} problem(s) in release {version}: stored scores that differ from their predictions, "
        "or files outside the release:\n  " + "\n  ".join(problems)
    )


@dataclasses.dataclass(frozen=True)
class RescoreSummary:
    release: Release
    replaced: int  # entries re-written
    scores: int  # stored scores recomputed
    changed: int  # of which the stored (rounded) value changed
    max_change: dict[str, float]  # metric id -> largest absolute change of a stored value

    def __str__(self) -> str:
        lines = [
            f"release {self.release.version}: {self.replaced} entries re-scored with scoring version {SCORING_VERSION}; "
            f"{self.changed} of {self.scores} stored scores changed"
        ]
        lines += [f"  {metric}: max |change| {change:.4f}" for metric, change in sorted(self.max_change.items())]
        return "\n".join(lines)


def rescore(release: Release, reason: str) -> RescoreSummary:
    """Recompute from its stored predictions every entry scored with an older scoring version, and
    replace it through the store (one commit, ``reason`` recorded in each entry, a note in the index).

    An entry keeps its metric list (no metric is added) and its predictions; its
    other fields are unchanged except ``schema_version``, ``scoring`` and, where the
    teacher's predictions are stored, the teacher's clean scores (recomputed the same
    way); without them the teacher's reported scores stay as they were.
    """
    if not reason or not reason.strip():
        raise CudBenchError("say why the release is re-scored (--reason)")
    new_entries, scores, changed = [], 0, 0
    max_change: dict[str, float] = collections.defaultdict(float)
    for entry in release.entries():
        if entry["scoring"] == SCORING_VERSION:
            continue
        arrays = release.predictions(entry)
        metrics, sets = _rescored(arrays, entry)
        if metrics != {k: entry["metrics"][k] for k in metrics} or set(sets) != set(entry["sets"]):
            raise CudBenchError(f"{entry_format.stem(entry['cell'])}: its predictions no longer give its sets and metrics; cannot re-score it")
        for set_id, stored in entry["sets"].items():
            ids = entry["metrics"][entry_format.scoring_of(stored)]
            for variant in entry_format.VARIANTS:
                for metric, old, new in zip(ids, stored[variant], sets[set_id][variant], strict=True):
                    scores += 1
                    changed += old != new
                    max_change[metric] = max(max_change[metric], abs(new - old))
        new = {**entry, "schema_version": entry_format.SCHEMA_VERSION, "scoring": SCORING_VERSION, "sets": sets}
        teacher = entry_format.teacher_scores(entry, arrays)
        if teacher is not None:
            new["teacher"] = {**entry["teacher"], "clean": {**entry["teacher"]["clean"], **teacher}}
        new_entries.append(new)
    note = (
        f"{len(new_entries)} entries re-scored from their stored predictions with scoring version {SCORING_VERSION} "
        f"(cud_bench/metrics.py): {reason.strip()}"
    )
    replaced = release.replace(new_entries, reason.strip(), note) if new_entries else 0
    return RescoreSummary(release, replaced, scores, changed, dict(max_change))


def _rescored(arrays: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """An entry's metrics and sets recomputed from its predictions, for its own classification metrics."""
    return entry_format.score_predictions(arrays, entry["temperature"], entry["shifts"], entry["metrics"])


def _compare(entry: dict[str, Any], metrics: dict[str, list[str]], sets: dict[str, Any]) -> tuple[int, list[str]]:
    checked, problems = 0, []
    for set_id, stored in entry["sets"].items():
        if set_id not in sets:
            problems.append(f"set {set_id!r} is not in its predictions")
            continue
        again = sets[set_id]
        if (again["kind"], again["n"], entry_format.scoring_of(again)) != (stored["kind"], stored["n"], entry_format.scoring_of(stored)):
            problems.append(
                f"set {set_id!r} is {again['kind']} with n={again['n']} ({entry_format.scoring_of(again)} scores) in its predictions, "
                f"stored as {stored['kind']} with n={stored['n']} ({entry_format.scoring_of(stored)} scores)"
            )
            continue
        scoring = entry_format.scoring_of(stored)
        position = {m: i for i, m in enumerate(metrics[scoring])}
        for i, metric in enumerate(entry["metrics"][scoring]):
            if metric not in position:
                problems.append(f"metric {metric!r} cannot be recomputed")
                continue
            for variant in entry_format.VARIANTS:
                checked += 1
                value, recomputed = stored[variant][i], again[variant][position[metric]]
                if abs(value - recomputed) > TOLERANCE:
                    problems.append(f"{set_id} {variant} {metric}: stored {value!r}, recomputed {recomputed!r}")
    return checked, problems
