"""The README's test command exercises the smoke suite end to end, through the CLI, offline,
then checks the CI claims file on it (and that a false required claim fails the check)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cud_bench import records
from cud_bench.cli import main
from cud_bench.runner import expand
from cud_bench.suites import suites
from shifts import get_shift


CI_CLAIMS = Path(__file__).parents[1] / "claims" / "smoke-ci.yaml"


def test_smoke_suite_writes_a_record_for_every_cell_with_shift_metrics(smoke_run, tmp_path, capsys):
    run, log = smoke_run  # the session's smoke run (conftest.py); this test only reads it
    assert "teachers (one per task, recipe, seed, fold)" in log
    smoke = suites.get("smoke")
    cells = expand(smoke)
    assert {(c.task, c.method, c.seed) for c in cells} == {
        (t, m, s) for t in smoke.tasks for m in smoke.methods for s in smoke.seeds
    }
    for cell in cells:
        record = records.read_record(cell.record_path(run))
        scored = record["student"]["shifts"]
        names = {name.split("@")[0] for name in scored}
        assert {"char-keyboard", "word-synonym", "corruption-clean"} <= names
        assert scored["char-keyboard@v2"]["3"]["n"] == scored["corruption-clean@v1"]["1"]["n"] == smoke.max_shift_examples
        assert record["student"]["corruption_summary"]["raw"]["mean_ece"] >= 0
        assert record["training"]["selection_rule"] == "min-val-calibrated-nll/patience=3"
        assert isinstance(record["student"]["degenerate"], bool) and 0 < record["student"]["majority_share"] <= 1
        # every applicable set is either scored (with at least the minimum size) or listed in the log
        expected = {"class-frequency", "teacher-disagreement"} | (
            {"rt-polarity-to-tweets", "rt-polarity-to-drug-reviews"} if cell.task == "rt-polarity"
            else {"tweets-airline-to-nfl", "tweets-low-agreement"}
        )  # fmt: skip
        for name in expected - names:
            assert f"{cell.task}: {get_shift(name).spec.id}/1 (" in log, name
        assert all(s["n"] >= smoke.min_set_size for by_sev in scored.values() for s in by_sev.values())
    assert "rt-polarity: class-frequency@v2/1 (equals the clean test set)" in log
    # a second run finds every cell done and writes nothing
    assert main(["run", "--suite", "smoke", "--out", str(run), "--no-progress"]) == 0
    assert f"{len(cells)} already done, 0 written" in capsys.readouterr().out
    assert json.loads(cells[0].record_path(run).read_text())["cell"]["suite"] == "smoke"

    # CI's claim holds on the smoke run; the same claim reversed is false, and fails the check
    report = tmp_path / "report"
    assert main(["check", str(CI_CLAIMS), "--results", str(run), "--out", str(report)]) == 0, capsys.readouterr().out
    verdicts = {v["claim"]: v for v in json.loads((report / "smoke-ci.json").read_text())["verdicts"]}
    assert verdicts["ts-lowers-ce-student-nll"]["status"] == "holds"
    false = yaml.safe_load(CI_CLAIMS.read_text())
    false["claims"] = [{**false["claims"][0], "id": "ts-raises-ce-student-nll", "direction": "higher"}]
    (tmp_path / "false.yaml").write_text(yaml.safe_dump(false))
    assert main(["check", str(tmp_path / "false.yaml"), "--results", str(run), "--out", str(report)]) == 1
    assert json.loads((report / "false.json").read_text())["verdicts"][0]["status"] == "fails"
