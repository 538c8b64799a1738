"""The sentence-feature cache: right vectors, in order, each text encoded once, safe on disk.

Every test uses its own cache folder (``cache_root=tmp_path``) and the real
MiniLM-L6 on real movie-review texts; FeatureStore mechanics (corruption,
concurrent writers) are also tested on small random shards.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from cud_bench.data.tasks import load_task
from cud_bench.models import features
from cud_bench.models.encoders import load_encoder
from cud_bench.models.features import FeatureStore, embed, encode, mean_pool, text_key


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    """40 real rt-polarity snippets of varied length (4 to 60-odd tokens)."""
    return list(load_task("rt-polarity")["test"]["text"][:40])


@pytest.fixture(scope="module")
def l6():
    return load_encoder("minilm-l6", device="cpu")


@pytest.fixture
def counted(monkeypatch):
    """Counts the texts that reach the model through ``features.embed``."""
    calls: list[int] = []
    real = features.embed

    def counting(tokenizer, model, texts, **kwargs):
        calls.append(len(texts))
        return real(tokenizer, model, texts, **kwargs)

    monkeypatch.setattr(features, "embed", counting)
    features._store.cache_clear()
    yield calls
    features._store.cache_clear()


def test_mean_pool_averages_only_unmasked_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 7.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = torch.tensor([[2.0, 3.0], [5.0, 7.0]])  # (1+3)/2, (2+4)/2; the second row has one token
    torch.testing.assert_close(mean_pool(hidden, mask), expected)


def test_padding_per_batch_equals_padding_to_max_length(l6, reviews):
    tokenizer, model = l6
    told = []
    per_batch = embed(tokenizer, model, reviews[:24], batch_size=10, padding="longest", on_batch=told.append)
    assert told == [10, 10, 4]  # a progress bar moves per batch, not per cache shard
    to_max = embed(tokenizer, model, reviews[:24], batch_size=8, padding="max_length")
    assert per_batch.shape == (24, 384) and per_batch.dtype == np.float32
    np.testing.assert_allclose(per_batch, to_max, atol=1e-5)


def test_a_vector_does_not_depend_on_its_batch(l6, reviews):
    tokenizer, model = l6
    alone = embed(tokenizer, model, reviews[:1])
    longest = max(reviews, key=len)
    for company in ([longest], reviews[5:20], [reviews[0]] * 3):
        np.testing.assert_allclose(embed(tokenizer, model, [reviews[0], *company])[0], alone[0], atol=1e-5)


def test_encode_keeps_input_order_and_encodes_duplicates_once(counted, reviews, l6, tmp_path):
    texts = [reviews[3], reviews[1], reviews[3], reviews[2], reviews[1]]
    got = encode("minilm-l6", texts, cache_root=tmp_path)
    assert counted == [3]
    expected = embed(*l6, [reviews[3], reviews[1], reviews[2]])
    np.testing.assert_allclose(got, expected[[0, 1, 0, 2, 1]], atol=1e-5)


def test_second_call_encodes_nothing_even_in_a_fresh_process(counted, reviews, tmp_path):
    first = encode("minilm-l6", reviews[:20], cache_root=tmp_path)
    assert counted == [20]
    again = encode("minilm-l6", reviews[10:20] + reviews[:10], cache_root=tmp_path)
    assert counted == [20]
    np.testing.assert_array_equal(again, np.concatenate([first[10:20], first[:10]]))
    features._store.cache_clear()  # as another process would: the index is read from disk
    mixed = encode("minilm-l6", reviews[15:25], cache_root=tmp_path)
    assert counted == [20, 5]
    np.testing.assert_array_equal(mixed[:5], first[15:20])


def test_max_length_is_part_of_the_cache_key(counted, reviews, tmp_path):
    text = max(reviews, key=len)
    long = encode("minilm-l6", [text], cache_root=tmp_path)
    short = encode("minilm-l6", [text], max_length=8, cache_root=tmp_path)
    assert counted == [1, 1]
    assert np.abs(long - short).max() > 1e-2


def test_corrupted_shard_is_set_aside_and_its_texts_encoded_again(counted, reviews, tmp_path):
    first = encode("minilm-l6", reviews[:6], cache_root=tmp_path)
    (shard,) = tmp_path.rglob("*.npz")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the vectors: only the zip CRC can tell
    shard.write_bytes(bytes(data))
    features._store.cache_clear()
    with pytest.warns(UserWarning, match="unreadable .*CRC"):
        again = encode("minilm-l6", reviews[:6], cache_root=tmp_path)
    assert counted == [6, 6]
    np.testing.assert_allclose(again, first, atol=1e-5)
    assert shard.with_suffix(".corrupt").exists() and not shard.exists()


def test_truncated_shard_is_skipped_when_indexing(tmp_path):
    store = FeatureStore(tmp_path, dim=4)
    store.put([text_key("a"), text_key("b")], np.ones((2, 4)))
    (shard,) = tmp_path.glob("*.npz")
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        assert FeatureStore(tmp_path, dim=4).get([text_key("a")]) == {}


def test_a_shard_of_the_wrong_width_is_refused(tmp_path):
    FeatureStore(tmp_path, dim=4).put([text_key("a")], np.ones((1, 4)))
    with pytest.warns(UserWarning, match=r"expected \(1, 8\)"):
        assert FeatureStore(tmp_path, dim=8).get([text_key("a")]) == {}
    with pytest.raises(ValueError, match="shape"):
        FeatureStore(tmp_path, dim=8).put([text_key("b")], np.ones((1, 4)))


def _write_shards(folder, offset, barrier) -> None:
    store = FeatureStore(folder, dim=16)
    barrier.wait()
    for shard in range(30):
        ids = range(offset + shard * 10, offset + shard * 10 + 10)
        store.put([text_key(str(i)) for i in ids], np.array([[i] * 16 for i in ids], dtype=np.float32))


def test_two_processes_writing_at_once_leave_a_readable_store(tmp_path):
    # two writer processes, released together, with overlapping texts (150..299 written by both);
    # fork, not spawn: the children need nothing imported again
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_write_shards, args=(tmp_path, o, barrier)) for o in (0, 150)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    assert len(list(tmp_path.glob("*.npz"))) == 60 and not list(tmp_path.glob(".*"))
    found = FeatureStore(tmp_path, dim=16).get([text_key(str(i)) for i in range(450)])
    assert len(found) == 450
    assert all(found[text_key(str(i))][0] == i for i in range(450))


def test_empty_input_and_bad_input(tmp_path, l6):
    assert encode("minilm-l6", [], cache_root=tmp_path).shape == (0, 384)
    with pytest.raises(ValueError, match="not one string"):
        encode("minilm-l6", "a single text", cache_root=tmp_path)
    with pytest.raises(ValueError, match=r"texts\[1\] is a NoneType"):
        encode("minilm-l6", ["fine", None], cache_root=tmp_path)
    with pytest.raises(ValueError, match="padding"):
        embed(*l6, ["x"], padding="right")
    with pytest.raises(ValueError, match="max_length"):
        embed(*l6, ["x"], max_length=1000)
