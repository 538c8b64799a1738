"""What a newcomer meets first: suite templates, shifts per task, the benchmark command (issue 13, item 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cud_bench.cli import main
from cud_bench.suites import load_suite, suites

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["smoke", "cpu", "finetune"])
def test_suites_show_prints_a_template_that_loads_back_to_the_same_suite(name, tmp_path, capsys):
    assert main(["suites", "show", name]) == 0
    text = capsys.readouterr().out
    assert "# max_train: cap on each task's training split" in text and "# shifts: shift families" in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert load_suite(str(path)) == suites.get(name)


def test_suites_list_names_every_suite(capsys):
    assert main(["suites", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in suites.names())


def test_shifts_can_be_filtered_by_task(capsys):
    import json

    assert main(["shifts", "--task", "drug-reviews", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("*" in r["tasks"] or "drug-reviews" in r["tasks"] for r in rows)
    assert main(["shifts", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) > len(rows)  # some shifts fit other tasks only
    assert main(["shifts", "--task", "rt-polarty"]) == 2
    assert "did you mean 'rt-polarity'" in capsys.readouterr().err


def test_pytest_benchmarks_collects_every_benchmark_file():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    assert files == {f"benchmarks/{p.name}" for p in (REPO / "benchmarks").glob("bench_*.py")}


def test_a_bare_pytest_still_collects_only_the_tests():
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"] and not list((REPO / "tests").glob("bench_*.py"))
