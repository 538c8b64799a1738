"""The leaderboard: entries scored from stored predictions, the append-only locked store,
upgrades, benchmark versions, statistics, views (byte-for-byte rebuild, headless Chromium).

Records are synthetic but written by the runner's own :func:`cud_bench.records.write_record`,
so they have the real layout; every number checked here is recomputed independently.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from cud_bench import metrics, summaries
from cud_bench.errors import CudBenchError
from cud_bench.records import CellKey, write_record
from cud_bench.specs import content_hash
from leaderboard import entry as entry_format
from leaderboard import site, stats, versions, views
from leaderboard.diff import diff_releases
from leaderboard.release import import_run, rescore, verify
from leaderboard.store import DEFAULT_ROOT, create_release, open_release
from leaderboard.upgrade import upgrade

FIXTURES = Path(__file__).parent / "fixtures" / "leaderboard"
N_CLEAN, N_SHIFT, N_OOS, C = 90, 40, 30, 3
TEACHER_METRICS = [spec.id for spec in metrics.STANDARD_SPECS]
LABELS = np.arange(N_CLEAN) % C
SHIFT_LABELS = np.arange(N_SHIFT) % C
TAIL_ROWS = np.arange(0, N_CLEAN, 3)
SHIFTS = {
    "typo@v1": {"family": "corruption", "kind": "labelled", "severities": (1, 2)},
    "tail@v1": {"family": "long-tail", "kind": "subset", "severities": (1,)},
    "unknown-intents@v1": {"family": "held-out", "kind": "out-of-scope", "severities": (1,)},
}
# method -> (signal added to the true class's logit, sharpness): ce is overconfident and weak
METHODS = {"kd": (1.5, 1.0), "cud": (1.5, 1.0), "ce": (0.2, 3.0)}
SEEDS = (0, 1, 2)
MANIFEST = {"task": {"toy@v1": "aaaaaaaaaaaa"}, "method": {"kd": "bbbbbbbbbbbb"}}


def _probs(rng: np.random.Generator, labels: np.ndarray, method: str) -> np.ndarray:
    signal, sharpness = METHODS[method]
    logits = rng.normal(0.0, 1.0, (len(labels), C))
    logits[np.arange(len(labels)), labels] += signal
    return softmax(sharpness * logits, axis=1)


def write_run(
    out: Path, *, methods=tuple(METHODS), seeds=SEEDS, variant: int = 0, method_hash: dict | None = None,
    tasks=("toy",), students=("mlp-l3",),
) -> Path:
    """Synthetic runner records under ``out/unit/records``. "cud" gets kd's predictions exactly
    (so it is indistinguishable from kd); ``variant`` changes every prediction; other tasks and
    students than the first get other predictions."""
    for method, seed, task, student in [(m, s, t, a) for m in methods for s in seeds for t in tasks for a in students]:
        other = [tasks.index(task), students.index(student)] if (task, student) != (tasks[0], students[0]) else []
        rng = np.random.default_rng([SEEDS.index(seed), variant, 0 if method == "cud" else list(METHODS).index(method), *other])
        predictions = {"clean/probs": _probs(rng, LABELS, method), "clean/labels": LABELS}
        predictions["shift/typo@v1/1/probs"] = _probs(rng, SHIFT_LABELS, method)
        predictions["shift/typo@v1/1/labels"] = SHIFT_LABELS
        predictions["shift/typo@v1/2/probs"] = _probs(rng, SHIFT_LABELS, method) ** 0.5
        predictions["shift/typo@v1/2/probs"] /= predictions["shift/typo@v1/2/probs"].sum(1, keepdims=True)
        predictions["shift/typo@v1/2/labels"] = SHIFT_LABELS
        predictions["shift/tail@v1/1/rows"] = TAIL_ROWS
        predictions["shift/unknown-intents@v1/1/probs"] = softmax(rng.normal(0, 1, (N_OOS, C)), axis=1)
        sizes = {"typo@v1": N_SHIFT, "tail@v1": len(TAIL_ROWS), "unknown-intents@v1": N_OOS}
        record = {
            "specs": {
                "task": {"hash": content_hash(task), "id": f"{task}@v1", "subset": "all", "spec": {"name": task}},
                "method": {"hash": (method_hash or {}).get((method, seed), content_hash(method)), "spec": {"name": method}},
                "suite": {"hash": content_hash("unit"), "spec": {"name": "unit", "seeds": list(seeds), "max_test": None}},
                "teacher_arch": {"hash": content_hash("teacher"), "spec": {}},
                "student_arch": {"hash": content_hash("student"), "spec": {}},
                "shifts": {s: {"hash": content_hash(s), "spec": {k: v for k, v in info.items() if k != "severities"}} for s, info in SHIFTS.items()},
            },
            "student": {
                "clean": {"n": N_CLEAN, "temperature": 1.25 + 0.25 * seed},
                "shifts": {s: {str(v): {"n": sizes[s]} for v in info["severities"]} for s, info in SHIFTS.items()},
            },
            "teacher": None if method == "ce" else {
                "recipe": "ce", "train_accuracy": 0.99,
                "targets": {"rows_changed": 0.1, "temperature": None, "accuracy": 0.98, "mean_confidence": 0.9},
                "clean": {v: {m: 0.5 + 0.01 * seed for m in TEACHER_METRICS} for v in ("raw", "ts")},
                "training": {"train_examples_per_s": 1000.0 + seed},
            },
            "training": {"best_epoch": 3, "epochs_run": 5, "selection_rule": "best-val-accuracy", "history": [{"epoch": 1}]},
            "provenance": {"cud_bench_version": "0.1.0", "git_commit": None, "variant": variant},
        }
        write_record(out, CellKey("unit", task, method, seed, "cross-fit", student), record, predictions)
    return out / "unit" / "records"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture()
def bench_file(tmp_path, monkeypatch) -> Path:
    """A benchmark file whose manifest matches the (patched) code's."""
    monkeypatch.setattr(versions, "current_manifest", lambda: json.loads(json.dumps(MANIFEST)))
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps({"version": "1.0.0", "specs": MANIFEST}))
    return path


@pytest.fixture()
def release(records, tmp_path, bench_file):
    return import_run(records, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release


def _entry(records: Path, method: str = "kd", seed: int = 0) -> tuple[dict, Path]:
    path = records / f"toy__{method}__mlp-l3__cross-fit__seed{seed}.json"
    npz = path.with_suffix(".npz")
    return entry_format.from_record(json.loads(path.read_text()), npz), npz


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _values(entry: dict, set_id: str, variant: str) -> dict[str, float]:
    return dict(zip(entry_format.set_metric_ids(entry, set_id), entry["sets"][set_id][variant]))


# -- entries ---------------------------------------------------------------------------
def test_entry_scores_are_recomputed_from_the_stored_float16_predictions(records):
    entry, npz = _entry(records, "ce", 1)
    with np.load(npz) as z:
        p16 = {k: z[k] for k in z.files}
    clean = p16["clean/probs"].astype(np.float64)
    assert p16["clean/probs"].dtype == np.float16
    raw, ts = _values(entry, "clean", "raw"), _values(entry, "clean", "ts")
    assert raw["accuracy"] == round(float(np.mean(clean.argmax(1) == LABELS)), entry_format.DECIMALS)
    assert raw["ece/uniform/15/l1"] == round(metrics.ece(clean / clean.sum(1, keepdims=True), LABELS), entry_format.DECIMALS)
    tempered = softmax(np.log(clean) / entry["temperature"], axis=1)
    assert entry["temperature"] == 1.5
    assert ts["nll"] == pytest.approx(-np.mean(np.log(tempered[np.arange(N_CLEAN), LABELS])), abs=10**-entry_format.DECIMALS)
    assert ts["accuracy"] == raw["accuracy"]  # temperature never changes the argmax
    tail = _values(entry, "tail@v1/1", "raw")
    assert entry["sets"]["tail@v1/1"]["n"] == len(TAIL_ROWS)
    assert tail["accuracy"] == round(float(np.mean(clean[TAIL_ROWS].argmax(1) == LABELS[TAIL_ROWS])), entry_format.DECIMALS)
    # Corrupted sets are stored and scored as per-row summaries: the predicted class, and the
    # confidence raw and after TS in 240 cells of (0, 1], each standing for its midpoint.
    pooled = np.concatenate([p16[f"shift/typo@v1/{s}/probs"] for s in (1, 2)]).astype(np.float64)
    pooled_labels = np.tile(SHIFT_LABELS, 2)
    assert entry["sets"]["pool/corruption"]["n"] == 2 * N_SHIFT
    for set_id in ("typo@v1/1", "typo@v1/2", "pool/corruption"):
        assert entry["sets"][set_id]["stored"] == "summary"
        assert "nll" not in entry_format.set_metric_ids(entry, set_id) and "classwise_ece/uniform/15/l1" not in entry_format.set_metric_ids(entry, set_id)
    pooled_raw = _values(entry, "pool/corruption", "raw")
    assert pooled_raw["accuracy"] == round(float(np.mean(pooled.argmax(1) == pooled_labels)), entry_format.DECIMALS)
    for variant, p in (("raw", pooled / pooled.sum(1, keepdims=True)), ("ts", softmax(np.log(pooled) / entry["temperature"], axis=1))):
        cell = np.ceil(p.max(1) * 240 - 1e-9)
        midpoint = (np.maximum((cell - 1) / 240, 1 / C) + cell / 240) / 2
        bins = np.ceil(midpoint * 15).astype(int)  # (lo, hi] bins; a midpoint is never on an edge
        correct = p.argmax(1) == pooled_labels
        ece = sum(abs(correct[bins == b].sum() - midpoint[bins == b].sum()) for b in range(1, 16)) / len(bins)
        assert _values(entry, "pool/corruption", variant)["ece/uniform/15/l1"] == pytest.approx(ece, abs=10**-entry_format.DECIMALS)
        assert _values(entry, "pool/corruption", variant)["mean_confidence"] == pytest.approx(midpoint.mean(), abs=10**-entry_format.DECIMALS)
        assert abs(_values(entry, "pool/corruption", variant)["mean_confidence"] - p.max(1).mean()) <= 1 / 480 + 10**-entry_format.DECIMALS
    with_rows = _values(entry, "clean", "raw")
    assert "nll" in with_rows and "classwise_ece/uniform/15/l1" in with_rows  # sets stored whole keep every metric
    oos = p16["shift/unknown-intents@v1/1/probs"].astype(np.float64)
    confidence = np.concatenate([clean / clean.sum(1, keepdims=True), oos / oos.sum(1, keepdims=True)]).max(1)
    auroc = roc_auc_score(np.r_[np.ones(N_CLEAN), np.zeros(N_OOS)], confidence)
    assert _values(entry, "unknown-intents@v1/1", "raw")["ood_auroc/msp"] == pytest.approx(auroc, abs=10**-entry_format.DECIMALS)
    assert entry["training"] == {"best_epoch": 3, "epochs_run": 5, "selection_rule": "best-val-accuracy"}
    packed = entry_format.pack_predictions(entry_format.release_arrays(entry, entry_format.read_predictions(npz)))
    assert entry["predictions"]["sha256"] == hashlib.sha256(packed).hexdigest()
    assert entry["teacher"] is None  # ce has no teacher
    assert _entry(records, "kd", 1)[0]["teacher"]["clean"]["raw"] == [0.51] * len(TEACHER_METRICS)
    assert entry["specs"]["suite"] == entry_format.suite_settings_hash({"max_test": None})  # selection fields dropped
    entry_format.validate(entry, "test")


def test_packed_predictions_round_trip_byte_for_byte_and_are_smaller(records):
    npz = records / "toy__kd__mlp-l3__cross-fit__seed0.npz"
    arrays = entry_format.read_predictions(npz)
    packed = entry_format.pack_predictions(arrays)
    assert packed == entry_format.pack_predictions(dict(reversed(list(arrays.items()))))  # same bytes, any order
    again = entry_format.read_predictions(io.BytesIO(packed), "packed.npz")
    assert set(again) == set(arrays)
    for key, array in arrays.items():
        assert again[key].dtype == array.dtype and np.array_equal(again[key], array), key
    assert len(packed) < npz.stat().st_size


def test_shifts_missing_from_a_record_are_described_by_the_shift_registry(records, tmp_path):
    from shifts import get_shift

    record = json.loads((records / "toy__kd__mlp-l3__cross-fit__seed0.json").read_text())
    with np.load(records / "toy__kd__mlp-l3__cross-fit__seed0.npz") as z:
        arrays = {"clean/probs": z["clean/probs"], "clean/labels": z["clean/labels"]}
        arrays["shift/char-swap@v2/3/probs"], arrays["shift/char-swap@v2/3/labels"] = z["shift/typo@v1/1/probs"], z["shift/typo@v1/1/labels"]
    del record["specs"]["shifts"]
    record["student"]["shifts"] = {"char-swap@v2": {"3": {"n": N_SHIFT}}}
    npz = tmp_path / "char-swap.npz"
    np.savez_compressed(npz, **arrays)
    entry = entry_format.from_record(record, npz)
    spec = get_shift("char-swap@v2").spec
    assert entry["shifts"] == {"char-swap@v2": {"hash": spec.spec_hash(), "family": spec.family, "kind": spec.kind}}
    assert set(entry["sets"]) == {"clean", "char-swap@v2/3", "pool/corruption"}


def test_predictions_of_another_record_are_refused(records):
    record = json.loads((records / "toy__kd__mlp-l3__cross-fit__seed0.json").read_text())
    record["student"]["shifts"]["typo@v1"]["1"]["n"] = 41
    with pytest.raises(CudBenchError, match="do not match their record"):
        entry_format.from_record(record, records / "toy__kd__mlp-l3__cross-fit__seed0.npz")


# -- store: import, verify, append-only, atomicity, lock --------------------------------
def test_import_then_verify_recomputes_every_stored_score(release):
    entries = release.entries()
    assert len(entries) == len(METHODS) * len(SEEDS)
    whole, summarised = 2, 3  # clean and tail; typo x2 and pool/corruption (plus unknown-intents: 3 detection scores)
    assert verify(release) == len(entries) * 2 * (len(metrics.STANDARD_SPECS) * whole + len(summaries.SPECS) * summarised + 3)
    assert {e["scoring"] for e in entries} == {metrics.SCORING_VERSION}


def test_verify_names_an_entry_whose_scores_differ_from_its_predictions(release, records):
    entry, npz = _entry(records, "cud", 2)
    entry["sets"]["clean"]["raw"][0] += 0.01
    assert release.add(entry, npz, replace_reason="test: a wrong number slips in") == "replaced"
    stem = entry_format.stem(entry["cell"])
    with pytest.raises(CudBenchError, match=f"{stem}-[0-9a-f]{{12}}.json: clean raw accuracy: stored"):
        verify(release)


def test_same_result_is_unchanged_different_result_needs_a_reason(release, records, tmp_path):
    entry, npz = _entry(records)
    assert release.add(entry, npz) == "unchanged"
    entry["provenance"] = {"cud_bench_version": "9.9", "git_commit": "elsewhere"}
    assert release.add(entry, npz) == "unchanged"  # same numbers, other provenance
    rerun = write_run(tmp_path / "rerun", methods=("kd",), seeds=(0,), variant=1)
    changed, changed_npz = _entry(rerun)
    before = _snapshot(release.path)
    with pytest.raises(CudBenchError, match="already has unit__toy__kd__mlp-l3__cross-fit__seed0 with different results"):
        release.add(changed, changed_npz)
    assert _snapshot(release.path) == before
    old_sha = release.index()["entries"]["unit__toy__kd__mlp-l3__cross-fit__seed0"]
    assert release.add(changed, changed_npz, replace_reason="rerun after fixing the feature cache") == "replaced"
    stored = release.entry("unit__toy__kd__mlp-l3__cross-fit__seed0")
    assert stored["replaces"] == [{"previous": old_sha, "reason": "rerun after fixing the feature cache"}]
    assert stored["sets"] == changed["sets"] != entry["sets"]
    assert release.unlisted() == []  # the superseded entry and predictions files are gone
    verify(release)
    lines = diff_releases(open_release("1.0.0", release.path.parent), release)
    assert lines == ["release 1.0.0 -> 1.0.0", "no differences"]


def test_an_add_interrupted_before_the_index_commit_leaves_the_old_release(release, records, tmp_path, monkeypatch):
    from leaderboard import store

    rerun = write_run(tmp_path / "rerun", methods=("ce",), seeds=(1,), variant=2)
    changed, npz = _entry(rerun, "ce", 1)
    before = [json.dumps(e, sort_keys=True) for e in release.entries()]

    def crash(path, index):
        raise OSError("power cut")

    monkeypatch.setattr(store, "_write_index", crash)
    with pytest.raises(OSError, match="power cut"):
        release.add(changed, npz, replace_reason="rerun")
    assert [json.dumps(e, sort_keys=True) for e in release.entries()] == before
    assert len(release.unlisted()) == 2  # the new entry and predictions, not part of the release
    with pytest.raises(CudBenchError, match="named by no entry"):
        verify(release)
    monkeypatch.undo()
    assert release.add(changed, npz, replace_reason="rerun") == "replaced"
    assert release.unlisted() == []


def _add_all(root: str, items: list[tuple[dict, str]], barrier) -> None:
    release = open_release("1.0.0", Path(root))
    barrier.wait()
    for entry, npz in items:
        release.add(entry, Path(npz))


def test_two_processes_adding_at_once_lose_nothing(records, tmp_path):
    root = tmp_path / "releases"
    create_release("1.0.0", MANIFEST, root)
    items = [(e, str(p)) for e, p in (_entry(records, m, s) for m in METHODS for s in SEEDS)]
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_add_all, args=(str(root), items[i::2], barrier)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    release = open_release("1.0.0", root)
    assert release.stems() == sorted(entry_format.stem(e["cell"]) for e, _ in items)
    assert len(release.entries()) == len(items) and release.unlisted() == []


# -- bad files: one clear error naming the file, nothing changed -------------------------
def _entry_file(release, stem="unit__toy__kd__mlp-l3__cross-fit__seed0") -> Path:
    return release.entry_path(stem, release.index()["entries"][stem])


def _rewrite_entry(release, text: bytes) -> Path:
    """Replace an entry's bytes and make the index vouch for them (a deliberate hand edit)."""
    path = _entry_file(release)
    new_sha = hashlib.sha256(text).hexdigest()
    new_path = release.entry_path(path.name.rsplit("-", 1)[0], new_sha)
    path.unlink()
    new_path.write_bytes(text)
    index = release.index()
    index["entries"]["unit__toy__kd__mlp-l3__cross-fit__seed0"] = new_sha
    release.index_path.write_text(json.dumps(index))
    return new_path


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: _entry_file(r).write_bytes(_entry_file(r).read_bytes().replace(b'"seed":0', b'"seed":7')), "does not match the sha256"),
        (lambda r: _rewrite_entry(r, _entry_file(r).read_bytes()[:100]), "is not valid JSON"),
        (lambda r: _rewrite_entry(r, _entry_file(r).read_bytes().replace(b'"kind":"labelled"', b'"kind":"typo"', 1)), "does not match the schema entry-v3.json at sets/"),
        (lambda r: _rewrite_entry(r, _entry_file(r).read_bytes().replace(b'"schema_version":3', b'"schema_version":4')), "newer than this cud-bench reads"),
        (lambda r: (r.path / json.loads(_entry_file(r).read_bytes())["predictions"]["file"]).unlink(), "predictions file .* is missing"),
        (lambda r: r.index_path.write_text("{"), "cannot read release index"),
    ],
    ids=["hand-edited", "torn", "schema", "newer-schema", "no-predictions", "index"],
)
def test_damaged_files_give_an_error_naming_them_and_loading_writes_nothing(release, damage, message):
    damage(release)
    before = _snapshot(release.path)
    with pytest.raises(CudBenchError, match=message) as error:
        release.entries()
    assert str(release.path) in str(error.value)
    assert _snapshot(release.path) == before


def test_corrupted_predictions_are_found_when_read(release):
    entry = release.entries()[0]
    path = release.path / entry["predictions"]["file"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CudBenchError, match=f"predictions {path} do not match the sha256"):
        release.predictions(entry)


def test_schema_violations_and_missing_predictions_are_refused_before_writing(release, records):
    entry, npz = _entry(records, "ce", 0)
    before = _snapshot(release.path)
    del entry["temperature"]
    with pytest.raises(CudBenchError, match="'temperature' is a required property"):
        release.add(entry, npz)
    entry, _ = _entry(records, "ce", 0)
    with pytest.raises(CudBenchError, match="cannot read predictions file .*nowhere.npz"):
        release.add(entry, npz.with_name("nowhere.npz"))
    assert _snapshot(release.path) == before


def test_unknown_release_names_the_known_ones(release):
    with pytest.raises(CudBenchError, match=r"unknown release '9.9.9' .*\(releases: 1.0.0\)"):
        open_release("9.9.9", release.path.parent)


def test_import_refuses_a_run_with_a_bad_record_and_writes_nothing(records, tmp_path, bench_file):
    run = tmp_path / "bad"
    shutil.copytree(records, run / "unit" / "records")
    (run / "unit" / "records" / "toy__kd__mlp-l3__cross-fit__seed2.npz").unlink()
    with pytest.raises(CudBenchError, match="toy__kd__mlp-l3__cross-fit__seed2.npz is missing"):
        import_run(run, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file)
    assert not (tmp_path / "releases").exists()


def test_a_release_never_mixes_numerics_modes(release, records, tmp_path, bench_file):
    """Native entries stored: a portable run's records are refused whole, and the reverse on a new release."""
    portable = tmp_path / "portable"
    shutil.copytree(records, portable / "unit" / "records")
    for path in (portable / "unit" / "records").glob("*.json"):
        record = json.loads(path.read_text())
        record["provenance"]["numerics"] = {"mode": "portable"}
        path.write_text(json.dumps(record))
    before = _snapshot(release.path)
    with pytest.raises(CudBenchError, match="would mix numerics modes.*rerun without --portable"):
        import_run(portable, "1.0.0", root=release.path.parent, benchmark_file=bench_file)
    assert _snapshot(release.path) == before
    other = import_run(portable, "1.0.0", root=tmp_path / "other", benchmark_file=bench_file).release
    with pytest.raises(CudBenchError, match="would mix numerics modes.*rerun with --portable"):
        import_run(records, "1.0.0", root=other.path.parent, benchmark_file=bench_file)


# -- upgrades --------------------------------------------------------------------------
def test_a_version_0_entry_upgrades_loads_and_verifies(tmp_path):
    old = json.loads((FIXTURES / "entry-v0.json").read_text())
    new = upgrade(old, "entry-v0.json")
    entry_format.validate(new, "upgraded")
    assert new["cell"] == {"suite": "cpu", "task": "rt-polarity", "method": "kd", "seed": 3, "protocol": "in-sample", "student": "mlp-l3"}
    assert new["specs"]["teacher_arch"] == old["spec_hashes"]["teacher"] and new["task"]["id"] == "rt-polarity@v1"
    assert _values(new, "clean", "raw") == {"accuracy": old["results"]["acc"], "brier": old["results"]["brier"], "ece/uniform/15/l1": old["results"]["ece"], "nll": old["results"]["nll"]}
    assert _values(new, "clean", "ts")["nll"] == old["results"]["ts_nll"]
    with np.load(FIXTURES / "entry-v0.npz") as z:
        assert old["results"]["acc"] == round(float(np.mean(z["clean/probs"].argmax(1) == z["clean/labels"])), 6)
    # a release written in the old layout still loads, and its scores still verify
    release = create_release("0.1.0", {}, tmp_path)
    stem = entry_format.stem(new["cell"])
    text = (FIXTURES / "entry-v0.json").read_bytes()
    sha = hashlib.sha256(text).hexdigest()
    release.entry_path(stem, sha).parent.mkdir()
    release.entry_path(stem, sha).write_bytes(text)
    (release.path / "predictions").mkdir()
    shutil.copy(FIXTURES / "entry-v0.npz", release.path / new["predictions"]["file"])
    release.index_path.write_text(json.dumps({"format": 1, "version": "0.1.0", "benchmark": {}, "entries": {stem: sha}}))
    assert release.entries() == [new]
    with pytest.raises(CudBenchError, match="scored with scoring version 1, this code scores version 2; re-score"):
        verify(release)
    summary = rescore(release, "test: scoring version 2")
    assert (summary.replaced, summary.scores) == (1, 8)
    assert verify(release) == 8
    assert release.entries()[0]["replaces"] == [{"previous": sha, "reason": "test: scoring version 2"}]
    assert release.unlisted() == []


def test_a_schema_1_entry_of_release_1_0_0_reads_as_scoring_1_and_is_rescored_through_the_store(tmp_path):
    """A real entry of release 1.0.0 as first committed (schema 1, scoring 1) and its predictions."""
    text = (FIXTURES / "entry-v1.json").read_bytes()
    old = json.loads(text)
    new = upgrade(old, "entry-v1.json")
    assert new == {**old, "schema_version": 3, "scoring": 1}
    entry_format.validate(new, "upgraded")
    release = create_release("1.0.0", {}, tmp_path)
    stem, sha = entry_format.stem(new["cell"]), hashlib.sha256(text).hexdigest()
    release.entry_path(stem, sha).parent.mkdir()
    release.entry_path(stem, sha).write_bytes(text)
    (release.path / "predictions").mkdir()
    shutil.copy(FIXTURES / "entry-v1.npz", release.path / new["predictions"]["file"])
    release.index_path.write_text(json.dumps({"format": 1, "version": "1.0.0", "benchmark": {}, "entries": {stem: sha}}))
    assert release.entries() == [new]
    with pytest.raises(CudBenchError, match="scoring version 1"):
        verify(release)
    with pytest.raises(CudBenchError, match="say why"):
        rescore(release, " ")
    summary = rescore(release, "scoring version 2")
    assert (summary.replaced, summary.scores) == (1, 55 * 2 * 10)
    assert set(summary.max_change) <= set(old["metrics"]["classification"])
    # this cell predicts the majority class (tied confidences): only tie-sensitive metrics move by more
    # than the rounding unit (float16 rows are no longer renormalised, ~1e-4 at most)
    tie_sensitive = {"ece/quantile/15/l1", "aurc"}
    assert all(change <= 1.01e-4 for metric, change in summary.max_change.items() if metric not in tie_sensitive)
    assert summary.max_change["ece/quantile/15/l1"] > 0.01
    (rescored,) = release.entries()
    assert rescored["metrics"] == old["metrics"]  # no metric added to an existing entry
    assert {k: v for k, v in rescored.items() if k not in ("sets", "scoring", "schema_version", "replaces")} == {
        k: v for k, v in old.items() if k not in ("sets", "schema_version")
    }
    assert rescored["replaces"] == [{"previous": sha, "reason": "scoring version 2"}]
    assert release.notes() == ["1 entries re-scored from their stored predictions with scoring version 2 (cud_bench/metrics.py): scoring version 2"]
    assert verify(release) == 55 * 2 * 10
    assert [p.name for p in (release.path / "entries").iterdir()] == [release.entry_path(stem, release.index()["entries"][stem]).name]
    assert rescore(release, "again").replaced == 0  # nothing left to re-score


def test_an_unreadable_old_entry_names_the_file():
    with pytest.raises(CudBenchError, match="old.json: not a valid version-0 entry"):
        upgrade({"suite": "cpu"}, "old.json")


# -- benchmark versions ------------------------------------------------------------------
def test_manifest_changes_say_which_bump_they_need():
    old = {"task": {"a@v1": "111111111111", "b@v1": "222222222222"}, "metric": {"ece": "333333333333"}}
    added = {**old, "method": {"cud": "444444444444"}}
    changed = {**old, "task": {"a@v1": "111111111111", "b@v1": "999999999999"}}
    assert [str(c) for c in versions.diff_manifests(old, added)] == ["method cud: added"]
    assert versions.required_bump(versions.diff_manifests(old, added)) == "minor"
    assert [str(c) for c in versions.diff_manifests(old, changed)] == ["task b@v1: changed 222222222222 -> 999999999999"]
    assert versions.required_bump(versions.diff_manifests(old, changed)) == "major"
    assert versions.required_bump(versions.diff_manifests(old, {"metric": old["metric"]})) == "major"  # removed
    assert versions.required_bump([]) is None
    assert [versions.bumped("1.4.2", level) for level in ("major", "minor", "patch")] == ["2.0.0", "1.5.0", "1.4.3"]


def test_a_changed_spec_after_a_release_needs_a_major_bump(bench_file, tmp_path, monkeypatch):
    root = tmp_path / "releases"
    assert versions.check(root, bench_file) == "1.0.0"
    changed = {**MANIFEST, "method": {"kd": "cccccccccccc"}}
    monkeypatch.setattr(versions, "current_manifest", lambda: changed)
    with pytest.raises(CudBenchError, match="method kd: changed bbbbbbbbbbbb -> cccccccccccc") as error:
        versions.check(root, bench_file)
    assert "not released yet, so re-record" in str(error.value)
    assert versions.record(root, bench_file) == ("1.0.0", versions.diff_manifests(MANIFEST, changed))  # in place
    create_release("1.0.0", changed, root)
    monkeypatch.setattr(versions, "current_manifest", lambda: MANIFEST)
    with pytest.raises(CudBenchError, match=r"release 1.0.0 exists, so bump the version \(major: 2.0.0\)"):
        versions.check(root, bench_file)
    assert versions.record(root, bench_file)[0] == "2.0.0"
    assert versions.read_benchmark(bench_file) == ("2.0.0", MANIFEST)


def test_import_needs_the_current_benchmark_version(records, tmp_path, bench_file):
    with pytest.raises(CudBenchError, match="current benchmark version is 1.0.0"):
        import_run(records, "1.1.0", root=tmp_path, benchmark_file=bench_file)


def test_committed_benchmark_manifest_matches_the_code():
    """CI: a spec whose meaning changed without `cud-bench leaderboard version --record` fails here."""
    versions.check(DEFAULT_ROOT)


# -- statistics --------------------------------------------------------------------------
def _board(release, **kwargs):
    (board, methods), = stats.boards(release.entries()).items()
    return {(s.method, s.set_id, s.variant, s.metric): s for s in stats.summarize_board(board, methods, release.predictions, **kwargs)}


def test_statistics_over_seeds_and_the_paired_comparison_with_kd(release):
    got = _board(release, metrics=["accuracy", "nll"], tested_sets=["clean"], n_resamples=300)
    per_seed = [_values(release.entry(f"unit__toy__ce__mlp-l3__cross-fit__seed{s}"), "clean", "raw")["accuracy"] for s in SEEDS]
    ce = got[("ce", "clean", "raw", "accuracy")]
    assert ce.values == tuple(per_seed) and ce.seeds == SEEDS
    assert ce.mean == pytest.approx(np.mean(per_seed)) and ce.std == pytest.approx(np.std(per_seed, ddof=1))
    assert ce.low <= ce.mean <= ce.high
    kd = got[("kd", "clean", "raw", "accuracy")]
    assert ce.delta == pytest.approx(ce.mean - kd.mean, abs=2 * 10**-entry_format.DECIMALS) and ce.delta < 0
    assert ce.p_value < 0.05 and ce.rank == 3  # clearly worse than kd and cud (which tie)
    cud = got[("cud", "clean", "raw", "accuracy")]
    assert cud.delta == 0 and cud.p_value == 1.0 and cud.rank is None  # same predictions as kd
    assert kd.rank is None and kd.p_value is None  # the reference
    assert got[("ce", "typo@v1/1", "raw", "nll")].low is None  # not a tested set: no bootstrap
    assert got[("ce", "unknown-intents@v1/1", "raw", "accuracy")].note == "not scored"


def test_the_same_bootstrap_twice_gives_the_same_numbers(release):
    kwargs = dict(metrics=["ece/uniform/15/l1"], tested_sets=["pool/corruption"], n_resamples=50)
    assert _board(release, **kwargs) == _board(release, **kwargs)


def test_seeds_under_different_spec_hashes_are_never_averaged(tmp_path, bench_file):
    run = write_run(tmp_path / "run", method_hash={("cud", 2): "dddddddddddd"})
    release = import_run(run, "1.0.0", root=tmp_path / "releases", benchmark_file=bench_file).release
    got = _board(release, metrics=["accuracy"], tested_sets=["clean"], n_resamples=50)
    cud = got[("cud", "clean", "raw", "accuracy")]
    assert cud.mean is None and cud.rank is None
    assert cud.note == f"incompatible: 0, 1 under method={content_hash('cud')}; 2 under method=dddddddddddd"
    assert got[("ce", "clean", "raw", "accuracy")].mean is not None
    assert "incompatible: 0, 1 under method=" in views.markdown(release, list(got.values()))


# -- views ---------------------------------------------------------------------------------
def test_build_renders_every_view_and_rebuilds_byte_for_byte(release, tmp_path):
    first = views.build(release, tmp_path / "a", n_resamples=40)
    views.build(release, tmp_path / "b", n_resamples=40)
    names = sorted(str(p.relative_to(tmp_path / "a")) for p in first)
    assert names == [
        "LEADERBOARD.md", "assets/site.css", "assets/site.js", "claims.json", "figures/unit__toy__cross-fit__mlp-l3__corruption-severity.png",
        "figures/unit__toy__cross-fit__mlp-l3__reliability.png", "index.html", "leaderboard-all.csv.gz", "leaderboard.csv",
    ]
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    md = (tmp_path / "a" / "LEADERBOARD.md").read_text()
    kd_clean = np.mean([_values(e, "clean", "raw")["accuracy"] for e in release.entries() if e["cell"]["method"] == "kd"])
    assert f"| toy | kd | {100 * kd_clean:.1f} ± " in md
    rows = (tmp_path / "a" / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("suite,task,protocol,student,method,set,variant,metric")
    assert any(r.startswith("unit,toy,cross-fit,mlp-l3,ce,clean,raw,accuracy,3,0;1;2,") for r in rows)
    assert {r.split(",")[5] for r in rows[1:]} == {"clean", "pool/corruption"}
    every = gzip.decompress((tmp_path / "a" / "leaderboard-all.csv.gz").read_bytes()).decode().splitlines()
    assert set(rows) < set(every) and any(",typo@v1/2,ts,ece/uniform/15/l1," in r for r in every)
    (tmp_path / "a" / "figures" / "stale.svg").write_text("<svg/>")
    views.build(release, tmp_path / "a", n_resamples=40)
    assert not (tmp_path / "a" / "figures" / "stale.svg").exists()


def test_show_reads_stored_scores_and_refuses_unknown_names(release):
    view = site.show(release, site.Filters(variant="ts"))
    assert [(r["task"], r["method"]) for r in view["rows"]] == [("toy", "kd"), ("toy", "ce"), ("toy", "cud")]
    ce = [e for e in release.entries() if e["cell"]["method"] == "ce"]
    assert view["rows"][1]["mean"] == pytest.approx(np.mean([_values(e, "clean", "ts")["accuracy"] for e in ce]), abs=1e-6)
    assert view["claims"] == []  # no build has written claims.json
    with pytest.raises(CudBenchError, match="has no task 'other'"):  # an unknown task is bad input (issue 13)
        site.show(release, site.Filters(task="other"))
    with pytest.raises(CudBenchError, match="has no metric 'ece'.*; its metrics: accuracy, aurc"):
        site.show(release, site.Filters(metric="ece"))


def test_diff_lists_added_removed_and_changed_entries(release, records, tmp_path, bench_file):
    other = create_release("1.1.0", {**MANIFEST, "method": {"kd": "eeeeeeeeeeee"}}, tmp_path / "releases")
    for method in ("kd", "ce"):
        entry, npz = _entry(records, method, 0)
        other.add(entry, npz)
    rerun = write_run(tmp_path / "rerun", methods=("kd",), seeds=(1,), variant=3)
    other.add(*_entry(rerun, "kd", 1))
    lines = diff_releases(release, other)
    assert lines[:2] == ["release 1.0.0 -> 1.1.0", "spec method kd: changed bbbbbbbbbbbb -> eeeeeeeeeeee"]
    assert "- unit__toy__cud__mlp-l3__cross-fit__seed0" in lines
    assert "~ unit__toy__kd__mlp-l3__cross-fit__seed1" in lines
    assert "    predictions changed" in lines
    assert not any("seed0" in line and line.startswith("~") for line in lines)
