"""The runner end to end on real cached data: records, teacher sharing, determinism, resume.

Uses a tiny suite (drug-reviews, a few hundred examples, frozen MiniLM
features) so each run takes seconds once features are cached.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cud_bench import records, runner
from cud_bench.errors import CudBenchError
from cud_bench.suites import SuiteSpec, load_suite

TINY = SuiteSpec(
    name="tiny",
    tasks=("drug-reviews",),
    methods=("ce", "kd", "ts", "cud"),
    seeds=(0,),
    protocols=("in-sample", "cross-fit"),
    students=("mlp-l3",),
    n_folds=2,
    max_train=160,
    max_test=80,
    shifts=("char-swap", "class-frequency"),
    max_shift_examples=12,
)


def _metrics(out, suite=TINY):
    found = {}
    for path in sorted((out / suite.name / "records").glob("*.json")):
        r = json.loads(path.read_text())
        found[path.name] = (r["student"]["clean"], r["student"]["shifts"], r["teacher"] and r["teacher"]["clean"])
    return found


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    teachers = tmp_path_factory.mktemp("teachers")
    summary = runner.run_suite(TINY, out, progress=False, teacher_cache=teachers)
    return out, teachers, summary


def test_every_cell_has_a_complete_record(first_run):
    out, _, summary = first_run
    cells = runner.expand(TINY)
    assert summary.cells_written == len(cells) == 8
    for cell in cells:
        record = records.read_record(cell.record_path(out))
        assert record["cell"]["method"] == cell.method
        clean = record["student"]["clean"]
        assert {"accuracy", "nll", "brier", "ece/uniform/15/l1", "ece/quantile/15/l1", "aurc"} <= set(clean["raw"])
        assert set(clean["raw"]) == set(clean["ts"]) and clean["temperature"] > 0
        assert set(record["student"]["shifts"]) == {"char-swap@v1", "class-frequency@v1"}
        assert set(record["student"]["shifts"]["char-swap@v1"]) == {"1", "2", "3", "4", "5"}
        assert record["specs"]["method"]["hash"] and record["specs"]["task"]["id"] == "drug-reviews@v1"
        assert set(record["specs"]["shifts"]) == {"char-swap@v1", "class-frequency@v1"}
        assert (record["teacher"] is None) == (cell.method == "ce")
        predictions = records.read_predictions(cell.record_path(out))
        assert predictions["clean/probs"].dtype == np.float16
        recomputed = float(np.mean(predictions["clean/probs"].argmax(1) == predictions["clean/labels"]))
        assert recomputed == pytest.approx(clean["raw"]["accuracy"])


def test_each_teacher_is_trained_once_and_shared(first_run):
    _, _, summary = first_run
    # ce and dus recipes x (1 full-data teacher + 2 fold teachers); kd, ts and cud-wclip share the ce ones.
    assert summary.teachers_trained == {"ce": 3, "dus": 3}


def test_protocols_differ_only_in_the_targets(first_run):
    out, _, _ = first_run
    rec = {p: records.read_record(out / "tiny" / "records" / f"drug-reviews__kd__mlp-l3__{p}__seed0.json") for p in ("in-sample", "cross-fit")}
    assert rec["in-sample"]["teacher"]["clean"] == rec["cross-fit"]["teacher"]["clean"]  # the same scored teacher
    assert rec["in-sample"]["teacher"]["targets"] != rec["cross-fit"]["teacher"]["targets"]


def test_same_seed_gives_identical_numbers_after_retraining(first_run, tmp_path):
    out, _, _ = first_run
    runner.run_suite(TINY, tmp_path, progress=False, teacher_cache=tmp_path / "fresh-teachers")
    assert _metrics(tmp_path) == _metrics(out)


def test_an_interrupted_run_resumes_to_the_same_result(first_run, tmp_path, monkeypatch):
    out, teachers, _ = first_run
    real_write = records.write_record
    calls = []

    def dying_write(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while the fourth cell is being written
        calls.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(runner, "write_record", dying_write)
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(TINY, tmp_path, progress=False, teacher_cache=teachers)
    monkeypatch.setattr(runner, "write_record", real_write)
    assert len(list((tmp_path / "tiny" / "records").glob("*.json"))) == 3
    summary = runner.run_suite(TINY, tmp_path, progress=False, teacher_cache=teachers)
    assert (summary.cells_done_before, summary.cells_written) == (3, 5)
    assert _metrics(tmp_path) == _metrics(out)


def test_a_damaged_teacher_cache_is_retrained_not_trusted(first_run, tmp_path):
    _, teachers, _ = first_run
    victim = next(p for p in teachers.iterdir() if "-ce-" in p.name and p.name.endswith(tuple("0123456789abcdef")) and "full" in p.name)
    (victim / "logits.npz").write_bytes(b"not a zip")
    summary = runner.run_suite(TINY.restrict(methods=["kd"]), tmp_path, progress=False, teacher_cache=teachers)
    assert summary.teachers_trained == {"ce": 1}


def test_unknown_names_fail_before_any_work(tmp_path):
    with pytest.raises(Exception, match="did you mean 'cud'"):
        runner.run_suite(TINY.restrict(methods=["cdu"]), tmp_path, progress=False)
    assert not (tmp_path / "tiny").exists()


def test_suite_files_are_validated(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("tasks: [rt-polarity]\nmethods: [kd]\nseeds: [3]\n")
    suite = load_suite(str(good))
    assert (suite.name, suite.tasks, suite.seeds) == ("mine", ("rt-polarity",), (3,))
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [rt-polarity]\nmethods: [kd]\nseeds: [3]\nepochs: 4\n")
    with pytest.raises(CudBenchError, match="unknown field"):
        load_suite(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [rt-polarity\n")
    with pytest.raises(CudBenchError, match="cannot read suite file"):
        load_suite(str(broken))
    code = tmp_path / "code.yaml"
    code.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(CudBenchError):
        load_suite(str(code))


def test_a_records_scores_are_what_a_release_recomputes_from_its_predictions(first_run):
    """The runner scores the float16 probabilities it stores, with the same functions as the
    leaderboard: the record's numbers and the entry's recomputation agree exactly."""
    from leaderboard import entry as entry_format

    out, _, _ = first_run
    for path in sorted((out / "tiny" / "records").glob("*.json")):
        record = records.read_record(path)
        arrays = records.read_predictions(path)
        shifts = {sid: {"family": s["spec"]["family"], "kind": s["spec"]["kind"]} for sid, s in record["specs"]["shifts"].items()}
        ids, sets = entry_format.score_predictions(arrays, record["student"]["clean"]["temperature"], shifts)
        for variant in ("raw", "ts"):
            stored = [round(record["student"]["clean"][variant][m], entry_format.DECIMALS) for m in ids["classification"]]
            assert stored == sets["clean"][variant], (path.name, variant)
            for sev, scored in record["student"]["shifts"]["char-swap@v1"].items():
                again = sets[f"char-swap@v1/{sev}"][variant]
                assert [round(scored[variant][m], entry_format.DECIMALS) for m in ids["classification"]] == again
