"""Cache location and atomic file writes.

Why: an interrupted download, encode or run must never leave a file that looks
complete. Every write goes to a temporary file in the same folder and is
renamed into place (``os.replace`` is atomic on POSIX), so a reader sees either
the old file or the new one.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import platformdirs

from cud_bench.errors import CudBenchError, DataError

if TYPE_CHECKING:
    import numpy as np


def cache_dir() -> Path:
    """``$CUD_BENCH_CACHE`` or the user cache dir; created on first use."""
    root = Path(os.environ.get("CUD_BENCH_CACHE") or platformdirs.user_cache_dir("cud-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` on success only.

    If another process finished the same folder first, its copy is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def contained_path(dest: Path, member: str) -> Path:
    """``dest / member`` for an archive member name, refused if it could land outside ``dest``.

    Why: a sha-pinned archive is trusted, but a converted or user-supplied one is
    not; a member named ``../x`` or ``/etc/x`` must never be written.
    """
    parts = member.replace("\\", "/").split("/")
    if not member or member.startswith("/") or ".." in parts or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise DataError(f"archive member {member!r} would be written outside {dest}; refusing to extract it")
    target = Path(dest) / member
    if not target.resolve().is_relative_to(Path(dest).resolve()):
        raise DataError(f"archive member {member!r} would be written outside {dest}; refusing to extract it")
    return target


# -- content hashes: every cache entry carries one, written with it and checked when read --------
MANIFEST = "sha256.json"  # a cached folder's {relative path: sha256}, written last


class CacheMismatch(CudBenchError):
    """A cache entry's content does not match the hash written with it (edited, truncated, flipped)."""


# Cache entries rebuilt in this process because they failed their check, by kind ("teacher",
# "feature shard", ...): the run's summary reports them (cud_bench.runner.RunSummary.report).
_rebuilt: collections.Counter[str] = collections.Counter()


def count_rebuilt(kind: str) -> None:
    """Count one cache entry of ``kind`` that failed its check and is rebuilt (the caller names it in the log)."""
    _rebuilt[kind] += 1


def rebuilt_counts() -> dict[str, int]:
    """Cache entries rebuilt so far in this process, by kind (a run reports the difference it made)."""
    return dict(_rebuilt)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read now (no memo: a re-check must see an edit)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file; memoised per (path, size, mtime), for pinned inputs checked often."""
    st = os.stat(path)
    return _memo_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _memo_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def folder_hashes(root: Path, manifest: str = MANIFEST) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` except the manifest itself."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != manifest
    }


def write_manifest(root: Path, manifest: str = MANIFEST) -> None:
    """Record the hash of every file under ``root``; written last, it also marks the folder complete."""
    write_json_atomic(Path(root) / manifest, folder_hashes(root, manifest))


def manifest_problems(root: Path, manifest: str = MANIFEST) -> list[str]:
    """What is wrong with a cached folder against its manifest (empty: it is intact)."""
    root = Path(root)
    try:
        recorded = json.loads((root / manifest).read_text())
    except FileNotFoundError:
        return [f"{manifest} is missing (incomplete, or written before checksums)"]
    except (OSError, ValueError) as exc:
        return [f"{manifest} is unreadable ({exc})"]
    if not isinstance(recorded, dict):
        return [f"{manifest} is not a mapping of file hashes"]
    actual = folder_hashes(root, manifest)
    problems = [f"{name} is missing" for name in sorted(set(recorded) - set(actual))]
    problems += [f"{name} is not in {manifest}" for name in sorted(set(actual) - set(recorded))]
    problems += [
        f"{name} has sha256 {actual[name][:12]}..., {recorded[name][:12]}... was written with it"
        for name in sorted(set(actual) & set(recorded))
        if actual[name] != recorded[name]
    ]
    return problems


def _json_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def write_json_checked(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` with the sha256 of its canonical JSON, in one atomic file."""
    write_json_atomic(path, {"content_sha256": _json_digest(obj), "content": obj})


def read_json_checked(path: str | os.PathLike) -> Any:
    """The content written by :func:`write_json_checked`; :class:`CacheMismatch` if it fails its hash."""
    try:
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheMismatch(f"cache file {path} is unreadable ({exc})") from None
    if not (isinstance(stored, dict) and set(stored) == {"content_sha256", "content"}):
        raise CacheMismatch(f"cache file {path} carries no content hash (written by an older version)")
    if _json_digest(stored["content"]) != stored["content_sha256"]:
        raise CacheMismatch(f"cache file {path} does not match the sha256 written with it")
    return stored["content"]


_NPZ_HASH = "__content_sha256__"


def _arrays_digest(arrays: dict[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return np.frombuffer(digest.digest(), np.uint8)


def write_npz_checked(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Save ``arrays`` with the sha256 of their names, dtypes, shapes and bytes, in one atomic file."""
    if _NPZ_HASH in arrays:
        raise ValueError(f"{_NPZ_HASH} is reserved")
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays, **{_NPZ_HASH: _arrays_digest(arrays)})
        fh.flush()
        os.fsync(fh.fileno())


def read_npz_checked(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays written by :func:`write_npz_checked`; :class:`CacheMismatch` if they fail their hash."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # truncated zip, bad CRC, bad header: all mean "not this content"
        raise CacheMismatch(f"cache file {path} is unreadable ({type(exc).__name__}: {exc})") from None
    stored = arrays.pop(_NPZ_HASH, None)
    if stored is None:
        raise CacheMismatch(f"cache file {path} carries no content hash (written by an older version)")
    if stored.tobytes() != _arrays_digest(arrays).tobytes():
        raise CacheMismatch(f"cache file {path} does not match the sha256 written with it")
    return arrays
