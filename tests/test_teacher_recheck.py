"""Teacher scores and every fitted temperature are recomputed on import and by verify (issue 13, item 3).

The defect: a hand-edited teacher temperature (1.22 -> 5.0) in a record passed ``verify`` and
changed every after-TS score. The records here are synthetic but built like the runner's: real
float32 logits, temperatures fitted by :func:`cud_bench.calibration.fit_temperature`, teacher
scores by :func:`cud_bench.scoring.scores`, written by :func:`cud_bench.records.write_record`
with the arrays the runner stores (:func:`cud_bench.scoring.stored_logits`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_leaderboard import _snapshot, bench_file, write_run  # noqa: F401  (fixture)

from cud_bench import calibration
from cud_bench.errors import CudBenchError
from cud_bench.records import CellKey, write_record
from cud_bench.scoring import scores, stored_logits, stored_probs
from cud_bench.specs import content_hash
from leaderboard import entry as entry_format
from leaderboard.release import import_run, verify_release

C, N_TEST, N_VAL, FOLDS = 4, 120, 100, 2


def _logits(rng: np.random.Generator, labels: np.ndarray, signal: float, scale: float) -> np.ndarray:
    z = rng.normal(0.0, 1.0, (len(labels), C))
    z[np.arange(len(labels)), labels] += signal
    return (scale * z).astype(np.float32)


def write_records(out, methods=("kd", "ts"), protocols=("in-sample", "cross-fit"), seed=0):
    """One record per (method, protocol), with every array a release needs to recompute them."""
    rng = np.random.default_rng(seed)
    test_y, val_y = np.arange(N_TEST) % C, np.arange(N_VAL) % C
    teacher_test, teacher_val = _logits(rng, test_y, 1.5, 3.0), _logits(rng, val_y, 1.5, 3.0)  # over-confident: T > 1
    fold_val = [_logits(rng, val_y, 1.2, 2.0 + k) for k in range(FOLDS)]
    T_teacher = calibration.fit_temperature(teacher_val, val_y)
    teacher_probs = stored_probs(teacher_test)
    for method in methods:
        for protocol in protocols:
            student_test, student_val = _logits(rng, test_y, 1.0, 2.0), _logits(rng, val_y, 1.0, 2.0)
            T = calibration.fit_temperature(student_val, val_y)
            folds = [calibration.fit_temperature(z, val_y) for z in fold_val] if protocol == "cross-fit" else []
            target_T = (float(np.mean(folds)) if folds else T_teacher) if method == "ts" else None
            clean = scores(teacher_probs, test_y, T_teacher)
            record = {
                "specs": {
                    "task": {"hash": content_hash("toy"), "id": "toy@v1", "subset": "all", "spec": {"name": "toy"}},
                    "method": {"hash": content_hash(method), "spec": {"name": method}},
                    "suite": {"hash": content_hash("unit"), "spec": {"name": "unit", "max_test": None}},
                    "teacher_arch": {"hash": content_hash("teacher"), "spec": {}},
                    "student_arch": {"hash": content_hash("student"), "spec": {}},
                    "shifts": {},
                },
                "student": {"clean": {"n": N_TEST, "temperature": T}, "shifts": {}},
                "teacher": {
                    "recipe": "ce", "train_accuracy": 0.99, "clean": clean,
                    "targets": {"rows_changed": 0.0, "temperature": target_T, "accuracy": 0.9, "mean_confidence": 0.8},
                    "fold_temperatures": folds or None, "training": {"train_examples_per_s": 100.0},
                },
                "training": {"best_epoch": 2, "epochs_run": 4, "selection_rule": "min-val-calibrated-nll/patience=3"},
                "provenance": {"cud_bench_version": "test"},
            }
            predictions = {
                "clean/probs": stored_probs(student_test), "clean/labels": test_y,
                "validation/logits": stored_logits(student_val), "validation/labels": val_y,
                "teacher/clean/probs": teacher_probs, "teacher/validation/logits": stored_logits(teacher_val),
            }
            if folds and method == "ts":
                predictions.update({entry_format.fold_logits_key(k): stored_logits(z) for k, z in enumerate(fold_val)})
            write_record(out, CellKey("unit", "toy", method, seed, protocol, "mlp-l3"), record, predictions)
    return out / "unit" / "records"


def _edit(path, change):
    """Apply ``change(record, predictions)`` to a record file, as a hand edit would."""
    from cud_bench.records import read_predictions

    record = json.loads(path.read_text())
    change(record, read_predictions(path))
    path.write_text(json.dumps(record))


def _retemper_teacher(record, arrays, T=5.0):
    """The edit issue 13 made, done consistently: the teacher's temperature and its ts scores."""
    record["teacher"]["clean"] = scores(arrays["teacher/clean/probs"], arrays["clean/labels"], T)


def test_a_full_run_imports_and_verify_rechecks_everything(tmp_path, bench_file):  # noqa: F811
    records = write_records(tmp_path / "run")
    release = import_run(records, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release
    found = verify_release(release)
    assert found.entries == 4 and found.not_rechecked == {}
    # per entry: the student's temperature, 2 x 12 teacher scores, the teacher's temperature, and
    # (ts only) the targets' temperature; plus the 2 x 12 student clean scores
    assert found.checked == 4 * (1 + 24 + 1 + 24) + 2
    entry = release.entries()[0]
    assert entry["teacher"]["temperature"] > 1  # kept in the entry: the teacher's ts scores use it
    assert "not re-checked" not in str(found)


def test_a_teachers_arrays_are_stored_once_for_every_cell_trained_from_it(tmp_path, bench_file):  # noqa: F811
    records = write_records(tmp_path / "run")
    release = import_run(records, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release
    entries = {entry_format.stem(e["cell"]): e for e in release.entries()}
    teacher_files = {stem: e["predictions"]["teacher"]["file"] for stem, e in entries.items()}
    # the same teacher everywhere; only the cross-fit ts cell adds its fold teachers' logits
    with_folds = teacher_files.pop("unit__toy__ts__mlp-l3__cross-fit__seed0")
    assert len(set(teacher_files.values())) == 1 and with_folds not in teacher_files.values()
    on_disk = sorted(p.name for p in (release.path / "predictions").iterdir())
    assert len(on_disk) == 4 + 2 and release.unlisted() == []
    shared = release.path / next(iter(teacher_files.values()))
    assert set(entry_format.read_predictions(shared, part="teacher")) == {"teacher/clean/probs", "teacher/validation/logits"}
    for stem, e in entries.items():  # each cell's own file holds no teacher array; read back, the parts are whole again
        own = entry_format.read_predictions(release.path / e["predictions"]["file"])
        assert not any(k.startswith("teacher/") for k in own)
        assert "teacher/clean/probs" in release.predictions(e)
    # replacing one cell keeps the teacher file the other cells still name
    path = records / "toy__kd__mlp-l3__in-sample__seed0.json"
    _edit(path, lambda r, _: r["training"].update(best_epoch=3))
    entry = entry_format.from_record(json.loads(path.read_text()), path.with_suffix(".npz"))
    assert release.add(entry, path.with_suffix(".npz"), replace_reason="test") == "replaced"
    assert shared.is_file() and release.unlisted() == [] and verify_release(release).entries == 4  # raises on any problem


@pytest.mark.parametrize(
    ("cell", "change", "message"),
    [
        # issue 13's defect: the teacher's temperature 1.22 -> 5.0, its ts scores edited to match
        ("kd__mlp-l3__in-sample", _retemper_teacher, "teacher temperature: temperature 5.0 is not the one its stored validation logits give"),
        ("kd__mlp-l3__in-sample", lambda r, _: r["student"]["clean"].update(temperature=5.0), "student temperature: temperature 5.0 is not"),
        ("kd__mlp-l3__in-sample", lambda r, _: r["teacher"]["clean"]["raw"].update(accuracy=0.99), "teacher clean raw accuracy: stored 0.99, recomputed"),
        ("kd__mlp-l3__cross-fit", lambda r, _: r["teacher"]["clean"]["ts"].update(nll=0.01), "teacher clean ts nll: stored 0.01"),
        ("ts__mlp-l3__in-sample", lambda r, _: r["teacher"]["targets"].update(temperature=5.0), "targets temperature: temperature 5.0 is not"),
        ("ts__mlp-l3__cross-fit", lambda r, _: r["teacher"]["targets"].update(temperature=5.0), "targets temperature: 5.0 is not the mean of the fold teachers'"),
    ],
)
def test_a_hand_edited_record_is_refused_on_import(tmp_path, bench_file, cell, change, message):  # noqa: F811
    records = write_records(tmp_path / "run")
    root = tmp_path / "releases"
    import_run(write_records(tmp_path / "other", seed=1), "1.0.0", root=root, benchmark_file=bench_file)
    before = _snapshot(root / "1.0.0")
    _edit(records / f"toy__{cell}__seed0.json", change)
    with pytest.raises(CudBenchError, match=message) as error:
        import_run(records, "1.0.0", root=root, benchmark_file=bench_file)
    assert f"record of unit__toy__{cell}__seed0" in str(error.value) and "refusing it" in str(error.value)
    assert _snapshot(root / "1.0.0") == before  # nothing imported


def test_verify_names_an_entry_whose_teacher_temperature_was_changed(tmp_path, bench_file):  # noqa: F811
    """An entry written past import (a hand-made release, another tool) is caught by verify."""
    records = write_records(tmp_path / "run", methods=("kd",), protocols=("in-sample",))
    release = import_run(records, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release
    (path,) = records.glob("*.json")
    record = json.loads(path.read_text())
    entry = entry_format.from_record(record, path.with_suffix(".npz"))
    arrays = entry_format.read_predictions(path.with_suffix(".npz"))
    entry["teacher"]["temperature"] = 5.0
    entry["teacher"]["clean"] = entry_format.teacher_scores(entry, arrays)  # consistent with 5.0: the scores alone pass
    release.add(entry, path.with_suffix(".npz"), replace_reason="a hand edit")
    with pytest.raises(CudBenchError, match="teacher temperature: temperature 5.0 is not the one its stored validation logits give"):
        verify_release(release)


def test_verify_says_how_many_entries_it_could_not_recheck_and_why(tmp_path, bench_file):  # noqa: F811
    """Records before these arrays were stored (release 1.0.0's) still import and verify, and
    verify says what it could not re-check instead of passing it silently."""
    records = write_run(tmp_path / "run")  # test_leaderboard's records: no teacher predictions, no validation logits
    release = import_run(records, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release
    found = verify_release(release)
    n_entries, n_teachers = 9, 6  # ce has no teacher
    assert found.entries == n_entries
    assert found.not_rechecked == {
        "student temperature: no validation/logits stored (records before it was kept)": n_entries,
        "teacher scores: no teacher/clean/probs stored (records before benchmark 2.0.0)": n_teachers,
        "teacher temperature and teacher ts scores: the entry keeps no teacher temperature (made before it was kept)": n_teachers,
    }
    text = str(found)
    assert f"{n_teachers} entries: teacher scores: no teacher/clean/probs stored" in text and "not re-checked" in text


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0, 30.0])
@pytest.mark.parametrize("classes", [2, 20])
def test_the_stored_float16_logits_refit_the_float32_temperature(scale, classes):
    """The stated tolerance holds across logit scales (a confident teacher has large logits)."""
    rng = np.random.default_rng([classes, int(scale * 10)])
    y = np.arange(300) % classes
    z = rng.normal(0, 1, (300, classes)) + 1000.0  # a large common offset: float16 would lose it all uncentred
    z[np.arange(300), y] += 1.0
    z = (scale * z).astype(np.float32)
    T = calibration.fit_temperature(z, y)
    refit = calibration.fit_temperature(stored_logits(z).astype(np.float64), y)
    assert abs(refit / T - 1) <= calibration.REFIT_RTOL / 5
    assert calibration.refit_problem(T, stored_logits(z), y) is None
    assert "is not the one" in calibration.refit_problem(T * 1.01, stored_logits(z), y)
