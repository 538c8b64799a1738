"""Leaderboard import is all or nothing, and a bit-identical rerun re-imports as unchanged (issue 13, item 3)."""

from __future__ import annotations

import json

import pytest
from test_leaderboard import _snapshot, bench_file, write_run  # noqa: F401  (fixture)

from cud_bench.errors import CudBenchError
from leaderboard.release import import_run, verify


def test_an_import_refused_half_way_commits_nothing(tmp_path, bench_file):  # noqa: F811
    root = tmp_path / "releases"
    first = write_run(tmp_path / "first", methods=("kd",))
    release = import_run(first, "1.0.0", root=root, benchmark_file=bench_file).release
    before = _snapshot(release.path)
    # ce cells are new and sort first; kd cells then conflict (different results, no reason given)
    second = write_run(tmp_path / "second", methods=("ce", "kd"), variant=1)
    with pytest.raises(CudBenchError, match="different results"):
        import_run(second, "1.0.0", root=root, benchmark_file=bench_file)
    assert _snapshot(release.path) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    summary = import_run(second, "1.0.0", root=root, benchmark_file=bench_file, replace_reason="rerun with fixed code")
    assert summary.counts == {"added": 3, "replaced": 3}
    assert len(release.stems()) == 6 and verify(release) > 0
    assert release.unlisted() == []  # the replaced kd files are gone


def test_a_rerun_differing_only_in_measured_bookkeeping_is_unchanged(tmp_path, bench_file):  # noqa: F811
    root = tmp_path / "releases"
    records = write_run(tmp_path / "run", methods=("kd",))
    import_run(records, "1.0.0", root=root, benchmark_file=bench_file)
    for path in records.glob("*.json"):
        record = json.loads(path.read_text())
        record["teacher"]["training"]["train_examples_per_s"] *= 1.37  # another machine, another load
        record["provenance"]["hostname"] = "elsewhere"
        record["provenance"]["wall_s"] = {"student": 12.5}
        path.write_text(json.dumps(record))
    summary = import_run(records, "1.0.0", root=root, benchmark_file=bench_file)
    assert summary.counts == {"unchanged": 3}
