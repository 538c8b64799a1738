"""The runner end to end on real cached data: records, teacher sharing, determinism, resume.

Uses a tiny suite (drug-reviews, a few hundred examples, frozen MiniLM
features) so each run takes seconds once features are cached.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest

from cud_bench import calibration, records, runner, stages, taskdata
from cud_bench.errors import CudBenchError
from cud_bench.methods import get_method
from cud_bench.recipes import component
from cud_bench.scoring import ShiftSets
from cud_bench.suites import ENSEMBLE_SEEDS, SuiteSpec, load_suite, model_presets
from cud_bench.taskdata import Inputs, prepare_task
from cud_bench.teachers import TeacherStore

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
    shifts=("char-swap", "class-frequency", "teacher-disagreement"),
    max_shift_examples=12,
    min_set_size=10,  # a tiny suite: the sets are far below the benchmark's minimum of 100
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
        scored = set(record["student"]["shifts"])
        assert {"char-swap@v2", "corruption-clean@v1"} <= scored
        assert scored <= {"char-swap@v2", "corruption-clean@v1", "teacher-disagreement@v2", "class-frequency@v2"}
        assert set(record["student"]["shifts"]["char-swap@v2"]) == {"1", "2", "3", "4", "5"}
        assert record["specs"]["method"]["hash"] and record["specs"]["task"]["id"] == "drug-reviews@v1"
        assert set(record["specs"]["shifts"]) == scored
        assert record["training"]["selection_rule"] == "min-val-calibrated-nll/patience=3"
        assert (record["teacher"] is None) == (cell.method == "ce")
        predictions = records.read_predictions(cell.record_path(out))
        assert predictions["clean/probs"].dtype == np.float16
        recomputed = float(np.mean(predictions["clean/probs"].argmax(1) == predictions["clean/labels"]))
        top2 = np.sort(predictions["clean/probs"].astype(np.float64), axis=1)[:, -2:]
        ties = int(np.sum(top2[:, 0] == top2[:, 1]))  # float16 rounding can tie the top two classes
        assert abs(recomputed - clean["raw"]["accuracy"]) <= ties / len(top2) + 1e-9
        # degenerate flag, computed on the clean test predictions
        share = np.bincount(predictions["clean/probs"].astype(np.float64).argmax(1)).max() / len(predictions["clean/labels"])
        assert record["student"]["majority_share"] == pytest.approx(share, abs=0.02)
        assert record["student"]["degenerate"] == (record["student"]["majority_share"] >= 0.95)
        # the corrupted texts are copies of clean rows; the clean reference holds the same rows
        rows = predictions["shift/char-swap@v2/3/rows"]
        assert len(rows) == 12 and np.array_equal(predictions["shift/char-swap@v2/3/labels"], predictions["clean/labels"][rows])
        assert np.array_equal(predictions["shift/corruption-clean@v1/1/rows"], rows)
        # the scored teacher's clean test probabilities, for bootstrapping teacher claims
        if record["teacher"] is None:
            assert not any(k.startswith("teacher/") for k in predictions)
            continue
        teacher_probs = predictions["teacher/clean/probs"]
        assert teacher_probs.dtype == np.float16 and teacher_probs.shape == predictions["clean/probs"].shape
        teacher_accuracy = float(np.mean(teacher_probs.argmax(1) == predictions["clean/labels"]))
        assert teacher_accuracy == pytest.approx(record["teacher"]["clean"]["raw"]["accuracy"], abs=0.02)
        assert record["teacher"]["degenerate"] == (record["teacher"]["majority_share"] >= 0.95)


def test_the_leaderboard_reads_the_new_prediction_keys(first_run):
    """``teacher/clean/probs`` and a corrupted set's ``rows`` are not sets of their own."""
    from leaderboard import entry

    out, _, _ = first_run
    path = out / "tiny" / "records" / "drug-reviews__kd__mlp-l3__cross-fit__seed0.json"
    built = entry.from_record(records.read_record(path), path.with_suffix(".npz"))
    entry.validate(built, path)
    assert not any(s.split("/")[0] == "teacher" for s in built["sets"])
    assert {"char-swap@v2/1", "corruption-clean@v1/1", "pool/corruption"} <= set(built["sets"])
    assert built["sets"]["pool/corruption"]["n"] == 5 * 12  # the clean reference is not pooled with them


def test_records_hold_what_recomputes_teacher_scores_and_every_temperature(first_run):
    """Issue 13: a record's teacher scores and fitted temperatures are recomputed on import from
    arrays the record stores (validation logits of the student, teacher and fold teachers)."""
    from leaderboard import entry as entry_format

    out, _, _ = first_run
    for path in sorted((out / "tiny" / "records").glob("*.json")):
        record, arrays = records.read_record(path), records.read_predictions(path)
        assert arrays["validation/logits"].dtype == np.float16 and arrays["validation/logits"].max() == 0  # centred rows
        fitted = [(record["student"]["clean"]["temperature"], arrays["validation/logits"])]
        if record["teacher"] is not None:
            fitted.append((record["teacher"]["clean"]["temperature"], arrays["teacher/validation/logits"]))
            n_folds = sum(k.startswith("teacher/fold/") for k in arrays)
            assert n_folds == (TINY.n_folds if record["teacher"]["fold_temperatures"] else 0)
        for T, logits in fitted:  # the stored float16 logits re-fit the runner's float32 temperature
            refit = calibration.fit_temperature(logits.astype(np.float64), arrays["validation/labels"])
            assert abs(refit / T - 1) <= calibration.REFIT_RTOL
        built = entry_format.from_record(record, path.with_suffix(".npz"))  # refuses any mismatch
        found = entry_format.recheck(built, arrays)
        assert found.problems == [] and found.not_rechecked == []
        teacher = record["teacher"]
        n_teacher = 0 if teacher is None else 2 * len(built["metrics"]["classification"]) + 1 + (teacher["targets"]["temperature"] is not None)
        assert found.checked == 1 + n_teacher  # student T; teacher scores, teacher T, targets T


def test_each_teacher_is_trained_once_and_shared(first_run):
    _, _, summary = first_run
    # ce and dus recipes x (1 full-data teacher + 2 fold teachers); kd, ts and cud-wclip share the ce ones.
    # Three more ce teachers, of the ensemble seeds, define teacher-disagreement: none is distilled.
    assert summary.teachers_trained == {"ce": 3 + len(ENSEMBLE_SEEDS), "dus": 3}


def test_the_ambiguity_ensemble_shares_no_teacher_with_any_method(first_run):
    """Version 1 used the suite's own seeds, so kd, ts and cud-wclip's teacher helped pick the subset."""
    _, teachers, _ = first_run
    store = TeacherStore(model_presets.get(TINY.teacher)(), TINY.n_folds, Inputs(False), teachers)
    data = prepare_task("drug-reviews", TINY)
    distilled = {
        store.key(data, get_method(m).for_task("drug-reviews").teacher, seed, fold)
        for m in TINY.methods if get_method(m).teacher is not None
        for seed in TINY.seeds for fold in (None, *range(TINY.n_folds))
    }  # fmt: skip
    ensemble = {store.key(data, component("teacher", "ce"), seed, None) for seed in TINY.ensemble_seeds}
    on_disk = {p.name for p in teachers.iterdir()}
    assert ensemble <= on_disk and len(distilled & on_disk) == 6  # both were trained in the run
    assert not ensemble & distilled
    with pytest.raises(CudBenchError, match="also ensemble seeds"):
        TINY.restrict(seeds=[0, ENSEMBLE_SEEDS[0]])


def test_cross_fit_ts_uses_each_fold_teachers_own_temperature(first_run):
    out, teachers, _ = first_run
    store = TeacherStore(model_presets.get(TINY.teacher)(), TINY.n_folds, Inputs(False), teachers)
    data = prepare_task("drug-reviews", TINY)
    ce = component("teacher", "ce")
    expected = [
        calibration.fit_temperature(store._get(data, ce, 0, fold).logits["validation"], data.validation.labels, split="validation")
        for fold in range(TINY.n_folds)
    ]
    crossfit = records.read_record(out / "tiny" / "records" / "drug-reviews__ts__mlp-l3__cross-fit__seed0.json")["teacher"]
    assert crossfit["fold_temperatures"] == pytest.approx(expected)
    assert crossfit["targets"]["temperature"] == pytest.approx(np.mean(expected))
    assert abs(crossfit["targets"]["temperature"] - store.full(data, ce, 0).temperature) > 1e-6  # not the full teacher's
    insample = records.read_record(out / "tiny" / "records" / "drug-reviews__ts__mlp-l3__in-sample__seed0.json")["teacher"]
    assert insample["fold_temperatures"] is None
    assert insample["targets"]["temperature"] == pytest.approx(store.full(data, ce, 0).temperature)


def test_small_sets_and_sets_equal_to_clean_are_not_scored():
    """A balanced task's head bucket is the clean set; sets below the minimum size are noise."""
    suite = SuiteSpec(
        name="sizes", tasks=("rt-polarity",), methods=("ce",), seeds=(0,), max_train=600, max_test=300,
        shifts=("char-swap", "class-frequency"), max_shift_examples=100,
    )  # fmt: skip
    assert suite.min_set_size == 100
    data = prepare_task("rt-polarity", suite)

    def no_teachers():
        raise AssertionError("no shift here needs teachers")

    sets = ShiftSets(suite, data, no_teachers)
    assert sets.not_scored == {
        "class-frequency@v2/1": "equals the clean test set",
        "class-frequency@v2/2": "0 examples, below the minimum of 100",
        "class-frequency@v2/3": "0 examples, below the minimum of 100",
    }
    assert sets.shift_ids == ["char-swap@v2", "corruption-clean@v1"] and all(len(s) == 100 for s in sets.sets)
    # the corruption sets are fixed data: the training seeds do not enter
    assert ShiftSets(dataclasses.replace(suite, seeds=(7, 8)), data, no_teachers).sets == sets.sets
    fewer = ShiftSets(dataclasses.replace(suite, max_shift_examples=99), data, no_teachers)
    assert fewer.sets == [] and fewer.not_scored["char-swap@v2/5"] == "99 examples, below the minimum of 100"
    assert fewer.not_scored["corruption-clean@v1/1"] == "99 examples, below the minimum of 100"
    summary = runner.RunSummary(out_dir=".", not_scored={"rt-polarity": fewer.not_scored})
    assert "sets not scored (never pooled): 9" in summary.report()
    assert "rt-polarity: char-swap@v2/1 (99 examples, below the minimum of 100)" in summary.report()


def test_protocols_differ_only_in_the_targets(first_run):
    out, _, _ = first_run
    rec = {p: records.read_record(out / "tiny" / "records" / f"drug-reviews__kd__mlp-l3__{p}__seed0.json") for p in ("in-sample", "cross-fit")}
    assert rec["in-sample"]["teacher"]["clean"] == rec["cross-fit"]["teacher"]["clean"]  # the same scored teacher
    assert rec["in-sample"]["teacher"]["targets"] != rec["cross-fit"]["teacher"]["targets"]


def test_a_suite_can_leave_its_teacher_unscored_on_shifts_without_changing_any_student(first_run, tmp_path):
    out, teachers, _ = first_run
    clean_only = dataclasses.replace(TINY, methods=("kd",), protocols=("in-sample",), teacher_shifts=False)
    assert clean_only.spec_hash() != TINY.spec_hash() and "teacher_shifts" not in TINY.to_dict()  # default: hash as before
    runner.run_suite(clean_only, tmp_path, progress=False, teacher_cache=teachers)
    stem = "drug-reviews__kd__mlp-l3__in-sample__seed0.json"
    before, after = (records.read_record(root / "tiny" / "records" / stem) for root in (out, tmp_path))
    assert before["teacher"]["shifts"] and after["teacher"]["shifts"] == {}
    assert after["teacher"]["clean"] == before["teacher"]["clean"] and after["student"] == before["student"]


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


def test_a_sweep_on_fewer_seeds_shares_the_suite_runs_records(first_run, tmp_path):
    """docs/cud-method.md section 9: the sweep writes into the suite run's folder, and its `kd`
    cells are the suite's records (seeds select cells; they are not a setting a record is checked against)."""
    from cud_bench.sweep import run_sweep

    out, teachers, _ = first_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    suite = dataclasses.replace(TINY, seeds=(0, 1)).restrict(seeds=[0])
    variants, summary = run_sweep(suite, "cud", {"gamma": ["5"]}, tmp_path)
    assert variants == ["cud+gamma=5"]
    assert (summary.cells_done_before, summary.cells_written, summary.cells_stale) == (2, 2, [])  # kd: found done


def test_workers_say_their_stage_and_write_each_record_as_soon_as_it_is_scored(first_run, tmp_path, monkeypatch):
    """A stack's records come one by one after its training, not all after its last scoring, and
    the stage file in between says what the worker does; none is left when the cells are done."""
    _, teachers, _ = first_run
    suite = dataclasses.replace(TINY, methods=("ce", "kd"), protocols=("in-sample",))
    seen = []
    real_report = stages.report

    def report(out_dir, suite_name, task, student, text):
        real_report(out_dir, suite_name, task, student, text)
        shown = stages.current(out_dir, suite_name, {})
        written = len(list((out_dir / suite_name / "records").glob("*.json")))
        seen.append((text, shown, written))

    student_encodes = []  # the stage each time the student's encoder is asked for features
    real_encode = taskdata.encode

    def encode(encoder, texts, **kwargs):
        if encoder == model_presets.get("mlp-l3")().needs_features:
            student_encodes.append(seen[-1][0])
        return real_encode(encoder, texts, **kwargs)

    monkeypatch.setattr(stages, "report", report)
    monkeypatch.setattr(taskdata, "encode", encode)
    runner.run_suite(suite, tmp_path, progress=False, teacher_cache=teachers)
    texts = [text for text, _, _ in seen]
    # every text the student reads is encoded in its own stage, none while training or scoring
    assert student_encodes and set(student_encodes) == {"encoding the clean splits and shifted sets"}
    assert texts == [
        "data and shifted sets",
        "encoding the clean splits and shifted sets",
        "cells 1-2 of 2, teachers and targets 1/2",
        "cells 1-2 of 2, teachers and targets 2/2",
        "cells 1-2 of 2, training 2 students",
        "cells 1-2 of 2, scoring 1/2",
        "cells 1-2 of 2, scoring 2/2",
    ]
    assert all(shown == f"drug-reviews mlp-l3: {text}" for text, shown, _ in seen)
    assert [written for _, _, written in seen][-2:] == [0, 1]  # the first record is out before the second is scored
    assert stages.stamps(tmp_path, suite.name) == {}  # finished: no stage left to show


def test_the_stage_names_each_teacher_while_it_trains(tmp_path, monkeypatch):
    suite = dataclasses.replace(TINY, methods=("kd",), protocols=("cross-fit",))
    seen = []
    monkeypatch.setattr(stages, "report", lambda out_dir, suite_name, task, student, text: seen.append(text))
    runner.run_suite(suite, tmp_path / "runs", progress=False, teacher_cache=tmp_path / "teachers")
    training = list(dict.fromkeys(text for text in seen if "training teacher" in text and "encoded" not in text))
    ensemble = [f"data and shifted sets, training teacher ce seed {s} full data" for s in suite.ensemble_seeds]
    cell = [f"cell 1 of 1, teacher and targets, training teacher ce seed 0 {which}" for which in ("full data", "fold 1/2", "fold 2/2")]
    assert sorted(training) == sorted(ensemble + cell), training  # kd's teacher recipe is ce; the full-data one is scored
    assert seen.index(ensemble[-1]) < seen.index("encoding the clean splits and shifted sets") < seen.index(cell[1])


def test_the_stage_says_how_far_the_encoding_a_teacher_waits_for_has_come(tmp_path, monkeypatch, private_cache):
    """On a fresh cache the features are encoded inside the first teacher that needs them: the line
    names that teacher, then the encoder's count, and drops the count when the encoding is done."""
    monkeypatch.setenv("CUD_BENCH_CACHE", str(private_cache("cache")))
    suite = dataclasses.replace(TINY, methods=("kd",), protocols=("in-sample",))
    seen = []
    monkeypatch.setattr(stages, "report", lambda out_dir, suite_name, task, student, text: seen.append(text))
    runner.run_suite(suite, tmp_path / "runs", progress=False, teacher_cache=tmp_path / "teachers")
    teacher, student = model_presets.get(suite.teacher)().needs_features, model_presets.get("mlp-l3")().needs_features
    first = f"data and shifted sets, training teacher ce seed {suite.ensemble_seeds[0]} full data"
    counting = [k for k, text in enumerate(seen) if text.startswith(f"{first}, {teacher}: ")]
    assert counting, seen
    assert re.fullmatch(rf"{re.escape(first)}, {teacher}: \d+/\d+ texts encoded", seen[counting[0]])
    assert seen[counting[-1] + 1] == first  # the count is dropped once the texts are encoded
    students = [text for text in seen if text.startswith(f"encoding the clean splits and shifted sets, {student}: ")]
    assert students, seen  # the student's encoder counts in its own stage


def test_the_bar_shows_only_stages_written_since_the_run_started(tmp_path):
    stages.report(tmp_path, "s", "rt-polarity", "mlp-l3", "training")  # a stale file of an earlier, killed run
    before = stages.stamps(tmp_path, "s")
    assert stages.current(tmp_path, "s", before) == ""
    stages.report(tmp_path, "s", "bbc-news", "hashed-bag", "scoring 3/90")
    assert stages.current(tmp_path, "s", before) == "bbc-news hashed-bag: scoring 3/90"
    stages.finished(tmp_path, "s", "bbc-news", "hashed-bag")
    assert stages.current(tmp_path, "s", before) == ""


def test_a_damaged_teacher_cache_is_retrained_not_trusted(first_run, tmp_path):
    _, teachers, _ = first_run
    victim = next(p for p in teachers.iterdir() if "-ce-" in p.name and p.name.endswith(tuple("0123456789abcdef")) and "full" in p.name)
    (victim / "logits.npz").write_bytes(b"not a zip")
    summary = runner.run_suite(TINY.restrict(methods=["kd"]), tmp_path, progress=False, teacher_cache=teachers)
    assert summary.teachers_trained == {"ce": 1}
    # the user sees it at the end of the run, not only in a log line scrolled away (issue 13)
    assert summary.caches_rebuilt == {"teacher": 1}
    assert "caches rebuilt after failing their check (named in the log above): teacher 1" in summary.report()
    again = runner.run_suite(TINY.restrict(methods=["kd"]), tmp_path / "again", progress=False, teacher_cache=teachers)
    assert again.caches_rebuilt == {} and "caches rebuilt" not in again.report()  # repaired once, then trusted


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
        T = record["student"]["clean"]["temperature"]
        ids, sets = entry_format.score_predictions(entry_format.compact(arrays, T, shifts), T, shifts)
        for variant in ("raw", "ts"):
            stored = [round(record["student"]["clean"][variant][m], entry_format.DECIMALS) for m in ids["classification"]]
            assert stored == sets["clean"][variant], (path.name, variant)
            for sev, scored in record["student"]["shifts"]["char-swap@v2"].items():  # a corruption: scored from its summary
                assert scored["stored"] == sets[f"char-swap@v2/{sev}"]["stored"] == "summary"
                again = sets[f"char-swap@v2/{sev}"][variant]
                assert [round(scored[variant][m], entry_format.DECIMALS) for m in ids["summary"]] == again
