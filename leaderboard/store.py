"""A release: the append-only, lock-protected store of leaderboard entries.

Layout of ``releases/<version>/``::

    index.json                           the commit point: entry stem -> sha256 of its file
    entries/<stem>-<sha12>.json          one entry per cell (leaderboard/entry.py)
    predictions/<suite>__<task>-<sha12>.npz   per-example predictions, packed (entry.pack_predictions);
                                         cells with identical predictions share one file
    predictions/<suite>__<task>__teacher-<sha12>.npz   a teacher's arrays, shared by the cells
                                         trained from it (entry.split_parts)
    .lock                                the writers' lock (not part of the release)

Files are content-addressed (``sha12``: the first 12 hex digits of the file's
sha256), so a new version of a cell never overwrites the files the index names.

Promises:

- **Append-only.** Adding a cell that is present with different results is
  refused unless the caller gives a replacement reason, which the new entry
  records (``replaces``, with the replaced file's sha256); the replaced file
  is deleted (its sha256 identifies it in git history). Re-adding the same
  results (only provenance differs) writes nothing. :meth:`Release.replace`
  re-writes many entries over their existing predictions in one commit (how
  a release is re-scored), and may add a line to the index's ``notes``.
- **Atomic.** Each file is written to a temporary name and renamed into place:
  the new predictions, then the new entry, then the index, which commits the
  change; the superseded files go last. A crash at any point leaves the old
  release or the new one (plus, perhaps, files the index does not name, which
  are not part of the release: the next add of that cell removes them, and
  :func:`leaderboard.release.verify` reports them).
- **Concurrent adds lose nothing**: they serialise on a file lock.
- **Loading checks everything and writes nothing**: the index against its
  schema, each entry against its checksum, its schema and its cell, that its
  predictions exist, and, when they are read, their sha256. Any failure is one
  :class:`CudBenchError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from cud_bench.errors import CudBenchError
from cud_bench.io import write_bytes_atomic, write_json_atomic
from leaderboard import entry as entry_format
from leaderboard.upgrade import upgrade
from leaderboard.versions import SEMVER, Manifest, check_semver

DEFAULT_ROOT = Path(__file__).with_name("releases")
INDEX_FORMAT = 1
LOCK_TIMEOUT_S = 300.0
BOOKKEEPING_FIELDS = ("provenance", "replaces")  # differ between runs of the same result


class Release:
    """One release folder. Get one with :func:`open_release` or :func:`create_release`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.version = self.path.name

    def __repr__(self) -> str:
        return f"Release({str(self.path)!r})"

    @property
    def index_path(self) -> Path:
        return self.path / "index.json"

    def index(self) -> dict[str, Any]:
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, ValueError) as exc:
            raise CudBenchError(f"cannot read release index {self.index_path}: {exc}") from None
        entry_format.check_schema(index, "index-v1.json", self.index_path)
        if index["version"] != self.version:
            raise CudBenchError(f"{self.index_path} says version {index['version']} but lives in folder {self.version}")
        return index

    def stems(self) -> list[str]:
        return sorted(self.index()["entries"])

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, sorted by stem, each checked (see the module docstring)."""
        return [self._load(stem, sha) for stem, sha in sorted(self.index()["entries"].items())]

    def entry(self, stem: str) -> dict[str, Any]:
        index = self.index()
        if stem not in index["entries"]:
            raise CudBenchError(f"release {self.version} has no entry {stem!r}")
        return self._load(stem, index["entries"][stem])

    def entry_path(self, stem: str, sha256: str) -> Path:
        return self.path / "entries" / f"{stem}-{sha256[:12]}.json"

    def unlisted(self) -> list[Path]:
        """Files in entries/ and predictions/ that no listed entry names: left by an interrupted
        add or copied in by hand; not part of the release."""
        named = set()
        for stem, sha in self.index()["entries"].items():
            named |= {self.entry_path(stem, sha), *(self.path / f for f, _ in entry_format.prediction_files(self._load(stem, sha)))}
        present = [p for folder in ("entries", "predictions") for p in sorted((self.path / folder).glob("*"))]
        return [p for p in present if p not in named]

    def predictions(self, entry: dict[str, Any]) -> dict[str, np.ndarray]:
        """The entry's per-example predictions (every part: the cell's and its teacher's), after
        checking their sha256."""
        arrays = {}
        for (file, sha), part in zip(entry_format.prediction_files(entry), ("cell", entry_format.TEACHER)):
            path = self.path / file
            data = _read(path, "predictions")
            if hashlib.sha256(data).hexdigest() != sha:
                raise CudBenchError(f"predictions {path} do not match the sha256 their entry records: corrupted or replaced")
            arrays |= entry_format.read_predictions(io.BytesIO(data), path, part)
        return arrays

    def add(self, entry: dict[str, Any], predictions: Path, *, replace_reason: str | None = None) -> str:
        """Add one entry and its runner predictions file, packed; returns "added", "replaced" or "unchanged".

        A cell already present with different results needs ``replace_reason``;
        without it the add is refused and nothing changes.
        """
        source = f"entry for cell {entry.get('cell')}"
        entry_format.validate(entry, source)
        stem = entry_format.stem(entry["cell"])
        arrays = entry_format.read_predictions(io.BytesIO(_read(predictions, "predictions")), predictions)
        field, data = entry_format.predictions_of(entry["cell"], entry_format.release_arrays(entry, arrays))
        if field != entry["predictions"]:
            raise CudBenchError(f"predictions {predictions} are not the file the {source} was built from (sha256 differs)")
        if replace_reason is not None and not replace_reason.strip():
            raise CudBenchError("a replacement reason must say why (got an empty string)")
        with self._lock():
            index = self.index()
            previous = self._load(stem, index["entries"][stem]) if stem in index["entries"] else None
            status = "added"
            if previous is not None:
                if _result(previous) == _result(entry):
                    return "unchanged"
                if replace_reason is None:
                    raise CudBenchError(
                        f"release {self.version} already has {stem} with different results; refusing to overwrite "
                        f"it. Replace it only with an explicit reason (replace_reason=..., CLI: --replace REASON)"
                    )
                replaced = {"previous": index["entries"][stem], "reason": replace_reason}
                entry = {**entry, "replaces": [*previous.get("replaces", []), replaced]}
                status = "replaced"
            text = entry_format.dumps(entry)
            sha = hashlib.sha256(text).hexdigest()
            for file, packed in data.items():
                write_bytes_atomic(self.path / file, packed)
            write_bytes_atomic(self.entry_path(stem, sha), text)
            index["entries"][stem] = sha
            _write_index(self.index_path, index)  # the commit
            self._drop_superseded(stem, sha)
            gone = {f for f, _ in entry_format.prediction_files(previous)} - set(data) if previous is not None else set()
            if gone:
                others = {f for s, h in index["entries"].items() if s != stem for f, _ in entry_format.prediction_files(self._load(s, h))}
                for file in gone - others:  # shared files stay while an entry names them
                    (self.path / file).unlink(missing_ok=True)
        return status

    def replace(self, entries: list[dict[str, Any]], reason: str, note: str | None = None) -> int:
        """Replace present cells by ``entries`` that keep their predictions file, in one commit;
        returns how many changed (an entry with the same results is skipped).

        Each new entry records ``reason`` and the replaced file's sha256 in
        ``replaces``; the replaced files are deleted after the index commits.
        ``note`` (when anything changed) is appended to the index's ``notes``.
        """
        if not reason or not reason.strip():
            raise CudBenchError("a replacement reason must say why (got an empty string)")
        with self._lock():
            index = self.index()
            staged = []
            for entry in entries:
                source = f"entry for cell {entry.get('cell')}"
                entry_format.validate(entry, source)
                stem = entry_format.stem(entry["cell"])
                if stem not in index["entries"]:
                    raise CudBenchError(f"release {self.version} has no entry {stem!r} to replace")
                previous = self._load(stem, index["entries"][stem])
                if previous["predictions"] != entry["predictions"]:
                    raise CudBenchError(f"the new {source} names other predictions; add it with its predictions file instead")
                if _result(previous) == _result(entry):
                    continue
                replaced = {"previous": index["entries"][stem], "reason": reason}
                staged.append((stem, entry_format.dumps({**entry, "replaces": [*previous.get("replaces", []), replaced]})))
            if not staged:
                return 0
            for stem, text in staged:  # every entry checked before anything is written
                index["entries"][stem] = hashlib.sha256(text).hexdigest()
                write_bytes_atomic(self.entry_path(stem, index["entries"][stem]), text)
            if note:
                index["notes"] = [*index.get("notes", []), note]
            _write_index(self.index_path, index)  # the commit
            for stem, _ in staged:
                self._drop_superseded(stem, index["entries"][stem])
        return len(staged)

    def notes(self) -> list[str]:
        """The release's notes: what was done to it after it was built (e.g. a re-scoring), oldest first."""
        return list(self.index().get("notes", []))

    def _drop_superseded(self, stem: str, sha256: str) -> None:
        for old in (self.path / "entries").glob(f"{stem}-*"):
            if old != self.entry_path(stem, sha256):
                old.unlink()

    def _load(self, stem: str, sha256: str) -> dict[str, Any]:
        path = self.entry_path(stem, sha256)
        data = _read(path, "entry")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CudBenchError(
                f"{path} does not match the sha256 in {self.index_path}: it was edited by hand or corrupted. "
                f"Restore it, or add the corrected result through the store with a replacement reason"
            )
        try:
            loaded = json.loads(data)
        except ValueError as exc:
            raise CudBenchError(f"{path} is not valid JSON: {exc}") from None
        loaded = upgrade(loaded, path)
        entry_format.validate(loaded, path)
        if entry_format.stem(loaded["cell"]) != stem:
            raise CudBenchError(f"{path} holds the cell {loaded['cell']}, which does not match its file name")
        for file, _ in entry_format.prediction_files(loaded):
            if not (self.path / file).is_file():
                raise CudBenchError(f"{path}: its predictions file {self.path / file} is missing")
        return loaded

    def _lock(self) -> _Lock:
        return _Lock(self.path / ".lock")


class _Lock(filelock.FileLock):
    """The release's writer lock; a timeout becomes a user-facing error."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), timeout=LOCK_TIMEOUT_S)

    def __enter__(self) -> _Lock:
        try:
            return super().__enter__()
        except filelock.Timeout:
            raise CudBenchError(f"another process has held {self.lock_file} for {LOCK_TIMEOUT_S:.0f} s; try again later") from None


def list_releases(root: Path = DEFAULT_ROOT) -> list[str]:
    """Versions of the releases under ``root``, oldest first (semver order)."""
    found = [p.parent.name for p in Path(root).glob("*/index.json") if SEMVER.match(p.parent.name)]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def open_release(version: str | None = None, root: Path = DEFAULT_ROOT) -> Release:
    """An existing release (None: the newest; a prefix such as ``1.0``: the newest 1.0.x); an
    unknown version names the releases there are."""
    known = list_releases(root)
    if version is None:
        if not known:
            raise CudBenchError(f"no releases under {root}")
        version = known[-1]
    elif version not in known and any(k.startswith(f"{version}.") for k in known):
        version = [k for k in known if k.startswith(f"{version}.")][-1]
    path = Path(root) / version
    if not (path / "index.json").is_file():
        raise CudBenchError(f"unknown release {version!r} under {root} (releases: {', '.join(known) or 'none'})")
    return Release(path)


def create_release(version: str, benchmark: Manifest, root: Path = DEFAULT_ROOT) -> Release:
    """The release ``version`` under ``root``, created empty (with the benchmark's manifest) if absent."""
    check_semver(version)
    release = Release(Path(root) / version)
    release.path.mkdir(parents=True, exist_ok=True)
    with release._lock():
        if not release.index_path.exists():
            _write_index(release.index_path, {"format": INDEX_FORMAT, "version": version, "benchmark": benchmark, "entries": {}})
    return release


def _write_index(path: Path, index: dict[str, Any]) -> None:
    entry_format.check_schema(index, "index-v1.json", path)
    write_json_atomic(path, index)


# Measured, not computed: a bit-identical rerun differs here (timings, throughput, hosts).
NESTED_BOOKKEEPING = {"teacher": ("train_examples_per_s",)}


def _result(entry: dict[str, Any]) -> dict[str, Any]:
    """What makes two entries the same result: everything but provenance, replacement history
    and the measured bookkeeping inside results (:data:`NESTED_BOOKKEEPING`)."""
    result = {k: v for k, v in entry.items() if k not in BOOKKEEPING_FIELDS}
    for part, keys in NESTED_BOOKKEEPING.items():
        if isinstance(result.get(part), dict):
            result[part] = {k: v for k, v in result[part].items() if k not in keys}
    return result


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CudBenchError(f"cannot read {what} file {path}: {exc}") from None
