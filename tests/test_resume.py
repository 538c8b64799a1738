"""Resuming reuses a record only if it was made with the cell's current specs (issue 13, item 2)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cud_bench import records, runner
from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from cud_bench.suites import SuiteSpec

QUICK = SuiteSpec(
    name="quick",
    tasks=("drug-reviews",),
    methods=("ce",),
    seeds=(0,),
    protocols=("in-sample",),
    teacher="hashed-bag",
    students=("hashed-bag",),
    max_train=120,
    max_test=40,
)


@pytest.fixture
def done(tmp_path):
    summary = runner.run_suite(QUICK, tmp_path, progress=False)
    assert summary.cells_written == 1
    return tmp_path


def test_an_unchanged_suite_reuses_its_records(done):
    summary = runner.run_suite(QUICK, done, progress=False)
    assert (summary.cells_done_before, summary.cells_written, summary.cells_stale) == (1, 0, [])
    assert summary.report().splitlines()[-1] == f"records: {done / 'quick' / 'records'}"


def test_an_edited_cap_makes_the_cells_stale_and_they_are_recomputed(done):
    edited = dataclasses.replace(QUICK, max_train=100)
    summary = runner.run_suite(edited, done, progress=False)
    assert summary.cells_written == 1 and summary.cells_done_before == 0
    assert summary.cells_stale == ["drug-reviews__ce__hashed-bag__in-sample__seed0: suite spec changed"]
    record = records.read_record(runner.expand(edited)[0].record_path(done))
    assert record["specs"]["suite"]["spec"]["max_train"] == 100
    assert runner.run_suite(edited, done, progress=False).cells_written == 0


def test_no_recompute_refuses_and_names_the_stale_cells(done):
    with pytest.raises(CudBenchError, match=r"drug-reviews__ce__hashed-bag__in-sample__seed0: suite spec changed"):
        runner.run_suite(dataclasses.replace(QUICK, max_test=30), done, progress=False, recompute=False)
    suite_file = done / "quick.yaml"
    suite_file.write_text(
        "name: quick\ntasks: [drug-reviews]\nmethods: [ce]\nseeds: [0]\nprotocols: [in-sample]\nteacher: hashed-bag\n"
        "students: [hashed-bag]\nmax_train: 120\nmax_test: 30\n"
    )
    assert main(["run", "--suite", str(suite_file), "--out", str(done), "--no-progress", "--no-recompute"]) == 2


def test_restricting_seeds_or_methods_is_not_a_change(done):
    wider = dataclasses.replace(QUICK, seeds=(0, 1), methods=("ce", "ls"))
    assert runner.stale_reason(done, runner.expand(QUICK)[0], runner.expected_specs(wider, runner.expand(QUICK)[0])) is None


def test_a_record_of_another_cell_is_not_done(done):
    cell = runner.expand(QUICK)[0]
    path = cell.record_path(done)
    record = json.loads(path.read_text())
    record["cell"]["seed"] = "0"  # the string seed of a hand-written suite must not pass for seed 0
    path.write_text(json.dumps(record))
    assert "another cell" in records.stale_reason(done, cell, runner.expected_specs(QUICK, cell))
