"""Every cache entry is checked against the hash written with it; a mismatch is named and rebuilt.

Each test damages one kind of cache entry the way issue 13 found it damaged (a
flipped byte, an edit, a truncation, a NaN) and checks that the damage is
detected, reported and repaired, never silently used.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from cud_bench import io as cio
from cud_bench.errors import CudBenchError, DataError
from cud_bench.models import encoders, features
from cud_bench.recipes import component
from cud_bench.suites import SuiteSpec, model_presets
from cud_bench.taskdata import Inputs, prepare_task
from cud_bench.teachers import TeacherStore


def _flip_byte(path, offset=-9):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- the generic helpers ---------------------------------------------------------------------
def test_checked_json_and_npz_refuse_a_flipped_byte(tmp_path):
    cio.write_json_checked(tmp_path / "a.json", {"texts": ["good movie"]})
    assert cio.read_json_checked(tmp_path / "a.json") == {"texts": ["good movie"]}
    (tmp_path / "a.json").write_text((tmp_path / "a.json").read_text().replace("good", "gold"))
    with pytest.raises(cio.CacheMismatch, match="a.json does not match"):
        cio.read_json_checked(tmp_path / "a.json")
    cio.write_npz_checked(tmp_path / "b.npz", {"x": np.arange(6, dtype=np.float32)})
    np.testing.assert_array_equal(cio.read_npz_checked(tmp_path / "b.npz")["x"], np.arange(6))
    with pytest.raises(cio.CacheMismatch, match="b.npz"):
        (tmp_path / "b.npz").write_bytes((tmp_path / "b.npz").read_bytes()[:100])  # truncated
        cio.read_npz_checked(tmp_path / "b.npz")


def test_manifest_names_the_changed_missing_and_extra_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.bin", "sub/b.bin"):
        (tmp_path / name).write_bytes(b"\x00" * 64)
    cio.write_manifest(tmp_path)
    assert cio.manifest_problems(tmp_path) == []
    _flip_byte(tmp_path / "sub" / "b.bin")
    (tmp_path / "a.bin").unlink()
    (tmp_path / "c.bin").write_bytes(b"new")
    problems = cio.manifest_problems(tmp_path)
    assert any(p.startswith("sub/b.bin has sha256") for p in problems)
    assert "a.bin is missing" in problems and "c.bin is not in sha256.json" in problems


# -- teachers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_task():
    suite = SuiteSpec(name="t", tasks=("drug-reviews",), methods=("kd",), seeds=(0,), max_train=120, max_test=40)
    return prepare_task("drug-reviews", suite)


def test_a_flipped_byte_in_teacher_weights_is_named_and_retrained(small_task, tmp_path, caplog):
    arch = model_presets.get("hashed-bag")()
    ce = component("teacher", "ce")
    first = TeacherStore(arch, 2, Inputs(False), tmp_path)
    expected = first.full(small_task, ce, 0).logits["test"]
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    _flip_byte(folder / "model.safetensors")

    again = TeacherStore(arch, 2, Inputs(False), tmp_path)
    with caplog.at_level(logging.WARNING):
        got = again.full(small_task, ce, 0)
    assert dict(again.trained) == {"ce": 1} and not again.reused  # retrained, not "reused from cache"
    assert folder.name in caplog.text and "model.safetensors" in caplog.text
    assert again.rebuilt == [str(folder)]
    np.testing.assert_array_equal(got.logits["test"], expected)  # the rebuilt teacher is the same teacher
    third = TeacherStore(arch, 2, Inputs(False), tmp_path)
    third.full(small_task, ce, 0)
    assert dict(third.reused) == {"ce": 1} and not third.rebuilt  # repaired once, then trusted


def test_edited_teacher_logits_are_not_used(small_task, tmp_path):
    arch = model_presets.get("hashed-bag")()
    ce = component("teacher", "ce")
    TeacherStore(arch, 2, Inputs(False), tmp_path).full(small_task, ce, 0)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with np.load(folder / "logits.npz") as z:
        logits = {k: z[k] for k in z.files}
    logits["test"] = logits["test"] * 2  # a well-formed file with different numbers
    with open(folder / "logits.npz", "wb") as fh:
        np.savez(fh, **logits)
    again = TeacherStore(arch, 2, Inputs(False), tmp_path)
    again.full(small_task, ce, 0)
    assert dict(again.trained) == {"ce": 1}


# -- features ---------------------------------------------------------------------------------
@pytest.fixture
def nan_model(monkeypatch):
    monkeypatch.setattr(features, "_loaded", lambda name: (None, None))
    monkeypatch.setattr(
        features, "embed", lambda tok, model, texts, **kw: np.full((len(texts), 384), np.nan, np.float32)
    )
    features._store.cache_clear()
    yield
    features._store.cache_clear()


def test_nan_features_are_refused_before_they_reach_the_cache(nan_model, tmp_path):
    with pytest.raises(CudBenchError, match=r"NaN or infinite features for 2 of 2 texts.*feature cache .*len64"):
        features.encode("minilm-l3", ["a film", "another film"], max_length=64, cache_root=tmp_path)
    assert not list(tmp_path.rglob("*.npz"))


def test_a_cached_nan_shard_is_set_aside(tmp_path):
    before = cio.rebuilt_counts().get("feature shard", 0)
    store = features.FeatureStore(tmp_path, 4)
    key = features.text_key("a film")
    np.savez(tmp_path / "old.npz", keys=np.frombuffer(key, np.uint8).reshape(1, 32), vectors=np.full((1, 4), np.nan, np.float32))
    with pytest.warns(UserWarning, match="NaN"):
        assert store.get([key]) == {}
    assert (tmp_path / "old.corrupt").exists()
    assert cio.rebuilt_counts()["feature shard"] == before + 1  # counted for the run's summary


# -- converted models and extracted members ----------------------------------------------------
def _fill(calls):
    def fill(tmp):
        calls.append(1)
        (tmp / "tokenizer.json").write_text(json.dumps({"version": "1.0", "vocab": list(range(50))}))
        (tmp / "model.safetensors").write_bytes(b"\x01" * 256)

    return fill


def test_an_edited_converted_model_is_named_and_rebuilt_once(tmp_path, caplog):
    calls: list[int] = []
    folder = tmp_path / "models" / "minilm-l3-abc"
    encoders.build_once(folder, _fill(calls))
    (folder / "tokenizer.json").write_text('{"version": "1.0", "vocab": [0, 1]}')  # edited by hand
    encoders._intact.cache_clear()  # as in a new process
    with caplog.at_level(logging.WARNING):
        encoders.build_once(folder, _fill(calls))
    assert len(calls) == 2 and "tokenizer.json has sha256" in caplog.text and str(folder) in caplog.text
    assert cio.rebuilt_counts()["converted model"] >= 1  # counted for the run's summary
    assert json.loads((folder / "tokenizer.json").read_text())["vocab"] == list(range(50))
    encoders._intact.cache_clear()
    encoders.build_once(folder, _fill(calls))
    assert len(calls) == 2


def test_a_truncated_tokenizer_is_a_clear_error_not_a_json_traceback(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from cud_bench.models.encoder_defs.minilm_l6 import minilm_l6

    folder = tmp_path / "l6"
    AutoTokenizer.from_pretrained(minilm_l6(), local_files_only=True).save_pretrained(folder)
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    entry = encoders.encoders.get("minilm-l6")
    monkeypatch.setattr(encoders.encoders, "get", lambda name: encoders.Encoder(entry.spec, entry.sources, lambda: folder))
    with pytest.raises(DataError, match=r"the tokenizer in .*l6 cannot be read.*delete that folder"):
        encoders.load_encoder("minilm-l6", device="cpu")


# -- corrupted shift sets ----------------------------------------------------------------------
def test_an_edited_corrupted_set_is_named_and_rebuilt(tmp_path, monkeypatch, caplog):
    import shifts.corruption as corruption
    from shifts import get_shift

    monkeypatch.setattr(corruption, "cache_dir", lambda: tmp_path)
    shift = get_shift("char-swap")
    first = shift.apply("drug-reviews", 1, max_examples=20)
    (path,) = tmp_path.rglob("severity1-seed0-*.json")
    path.write_text(path.read_text().replace(first.texts[0][:20], "an edited text!!", 1))
    with caplog.at_level(logging.WARNING):
        again = shift.apply("drug-reviews", 1, max_examples=20)
    assert again.texts == first.texts and str(path) in caplog.text
    assert cio.rebuilt_counts()["corrupted set"] >= 1  # counted for the run's summary
