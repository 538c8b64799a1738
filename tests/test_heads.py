"""Heads and architectures: networks, hashing, batching of prepared inputs, specs, registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cud_bench.errors import CudBenchError
from cud_bench.models.architectures import (
    BagInputs,
    HashedBagSpec,
    MLPSpec,
    TokenInputs,
    architectures,
    hashed_ngrams,
)
from cud_bench.models.dropout import Dropout, keep_mask
from cud_bench.models.heads import HashedBagClassifier, MeanPoolClassifier, MLPHead
from cud_bench.registry import RegistryError
from cud_bench.train import TrainConfig


# -- hashing ------------------------------------------------------------------------------


def test_hashed_ngrams_golden_values():
    # Published CRC-32 values: crc32(b"hello") = 0x3610A686 = 907060870,
    # crc32(b"world") = 0x3A771143 = 980881731, crc32(b"hello world") = 0x0D4A1185 = 222957957.
    assert hashed_ngrams("Hello, World!", 1000) == [870, 731, 957]
    assert hashed_ngrams("hello", 2**18) == [907060870 % 2**18]
    assert hashed_ngrams("  ...  ", 1000) == []


def test_hashed_ngrams_are_the_same_in_another_process():
    texts = ["The movie was GREAT, really great.", "naïve café — über 2 cool", ""]
    code = (
        "import json, sys; from cud_bench.models.architectures import hashed_ngrams; "
        "print(json.dumps([hashed_ngrams(t, 2**18) for t in json.loads(sys.argv[1])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(texts)],
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # str hash() would differ; crc32 must not
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [hashed_ngrams(t, 2**18) for t in texts]


# -- prepared inputs -----------------------------------------------------------------------


def test_bag_inputs_select_gathers_each_texts_ids():
    texts = ["a b c", "", "d e", "f"]
    arch = architectures.get("hashed-bag")(n_buckets=101)
    inputs = arch.prepare(texts, None)
    assert isinstance(inputs, BagInputs) and len(inputs) == 4
    ids, offsets = inputs.select(torch.tensor([2, 1, 0, 3]))
    expected = [hashed_ngrams(texts[i], 101) for i in (2, 1, 0, 3)]
    assert ids.tolist() == [i for seq in expected for i in seq]
    assert offsets.tolist() == [0, 3, 3, 8]  # "d e": 2 words + 1 bigram; "": none; "a b c": 3 + 2


def test_token_inputs_pad_each_batch_to_its_longest_text():
    inputs = TokenInputs(torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [9, 9, 9, 9]]), torch.tensor([3, 1, 4]))
    ids, mask = inputs.select(torch.tensor([1, 0]))
    assert ids.tolist() == [[8, 0, 0], [5, 6, 7]]
    assert mask.tolist() == [[1, 0, 0], [1, 1, 1]]


def test_mlp_prepare_checks_features():
    arch = architectures.get("mlp")(encoder="minilm-l6")
    x = np.random.default_rng(0).normal(size=(3, 384))
    inputs = arch.prepare(["a", "b", "c"], x)
    assert inputs.select(torch.tensor([2]))[0].dtype == torch.float32
    assert np.array_equal(inputs.select(torch.tensor([2, 0]))[0].numpy(), x[[2, 0]].astype(np.float32))
    with pytest.raises(CudBenchError, match="needs the 'minilm-l6' features"):
        arch.prepare(["a"], None)
    with pytest.raises(CudBenchError, match=r"shape \(3, 384\)"):
        arch.prepare(["a", "b", "c"], x[:, :100])
    x[1, 5] = np.nan
    with pytest.raises(CudBenchError, match="NaN"):
        arch.prepare(["a", "b", "c"], x)


# -- networks ------------------------------------------------------------------------------


def test_mlp_head_shape():
    head = MLPHead(in_dim=8, hidden=16, num_classes=3, dropout=0.5).eval()
    assert head(torch.zeros(5, 8)).shape == (5, 3)


def mt19937_keep_mask(seed: int, n: int, keep: float) -> np.ndarray:
    """The reference dropout mask, from numpy's MT19937 (not torch): torch's generator seeded with
    ``seed`` draws a float64 per element from the low 53 bits of two 32-bit outputs (first << 32 | second)."""
    bits = np.random.MT19937()
    bits._legacy_seeding(seed)  # mt19937's own init_genrand(seed), the seeding torch's generator uses
    raw = bits.random_raw(2 * n).astype(np.uint64)
    words = (raw[0::2] << np.uint64(32)) | raw[1::2]
    uniform = (words & np.uint64(2**53 - 1)).astype(np.float64) * 2.0**-53
    return (uniform < keep).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_dropout_masks_are_mt19937_draws_on_any_cpu(seed):
    # torch's own nn.Dropout draws these masks on AMD CPUs but MKL's on Intel ones (a vendor
    # check inside its scalar bernoulli_): keep_mask must not depend on the CPU it runs on.
    like = torch.empty(64, 33)
    mask = keep_mask(like, 0.9, torch.Generator().manual_seed(seed))
    assert mask.shape == like.shape and mask.dtype == like.dtype
    np.testing.assert_array_equal(mask.numpy().ravel(), mt19937_keep_mask(seed, like.numel(), 0.9))
    torch.manual_seed(seed)  # None: the global generator, as nn.Dropout uses
    np.testing.assert_array_equal(keep_mask(like, 0.9).numpy().ravel(), mask.numpy().ravel())


def test_dropout_scales_kept_units_and_passes_through_in_eval():
    layer = Dropout(0.25)
    x = torch.randn(200, 50, requires_grad=True)
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    scale = keep_mask(x, 0.75).div_(0.75)  # torch's dropout: x * (mask / (1 - p))
    kept = scale > 0
    assert torch.equal(y, x * scale) and not y[~kept].any()
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    assert 0.7 < kept.float().mean() < 0.8
    y.sum().backward()
    assert torch.equal(x.grad, scale)
    assert layer.eval()(x) is x and Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


def test_empty_bag_gives_the_classifier_bias():
    model = HashedBagClassifier(n_buckets=50, dim=4, num_classes=3)
    logits = model(torch.tensor([7, 9]), torch.tensor([0, 0]))  # text 0 is empty, text 1 has ids 7 and 9
    assert torch.equal(logits[0], model.classifier.bias)
    mean = model.embedding.weight[[7, 9]].mean(dim=0)
    assert torch.allclose(logits[1], model.classifier(mean))


def test_mean_pooling_ignores_padding():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = MeanPoolClassifier(BertModel(config, add_pooling_layer=False), 16, 3, dropout=0.1).eval()
    short = model(torch.tensor([[2, 5, 6, 3]]), torch.tensor([[1, 1, 1, 1]]))
    padded = model(torch.tensor([[2, 5, 6, 3, 0, 0]]), torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert torch.allclose(short, padded, atol=1e-6)


# -- specs and registry --------------------------------------------------------------------


def test_registry_lists_the_architectures_and_suggests_names():
    assert {"mlp", "hashed-bag", "finetune"} <= set(architectures.names())
    with pytest.raises(RegistryError, match="did you mean 'hashed-bag'"):
        architectures.get("hashed_bag")


def test_overrides_and_defaults_make_the_spec():
    mlp = architectures.get("mlp")
    student = mlp(encoder="minilm-l6", hidden=128, train={"epochs": 5})
    default_train = TrainConfig(epochs=5, batch_size=128, lr=2e-3, weight_decay=0.01)
    assert student.spec == MLPSpec(name="mlp", train=default_train, encoder="minilm-l6", hidden=128)
    assert student.needs_features == "minilm-l6"
    assert mlp(encoder="mpnet-base").create(5).net[0].in_features == 768  # the encoder's width, from its spec
    assert student.spec.spec_hash() != mlp().spec.spec_hash()
    assert mlp().spec.spec_hash() == mlp().spec.spec_hash()
    bag = architectures.get("hashed-bag")()
    assert bag.spec == HashedBagSpec(name="hashed-bag", train=bag.default_train) and bag.needs_features is None
    assert bag.spec.n_buckets == 2**17


def test_finetune_defaults_are_the_papers_setup():
    spec = architectures.get("finetune")().spec
    cfg = spec.train
    assert (cfg.batch_size, cfg.weight_decay, cfg.grad_clip, cfg.warmup_ratio) == (32, 0.01, 1.0, 0.1)
    assert (cfg.schedule, spec.max_length) == ("cosine", 128)


def test_unknown_hyperparameters_are_refused():
    with pytest.raises(RegistryError, match="unknown encoder 'minilm-l7'; did you mean"):
        architectures.get("mlp")(encoder="minilm-l7")
    with pytest.raises(ValueError, match="dropout"):
        architectures.get("finetune")(dropout=1.0)
    with pytest.raises(CudBenchError, match="no hyperparameter hiden"):
        architectures.get("mlp")(hiden=3)
    with pytest.raises(CudBenchError, match="no hyperparameter epoch "):
        architectures.get("mlp")(train={"epoch": 3})
    with pytest.raises(ValueError, match="checkpoint rule"):
        TrainConfig(selection="last-epoch")
    with pytest.raises(ValueError):
        TrainConfig(schedule="sawtooth")


def test_build_is_seeded_and_leaves_the_global_generator_alone():
    arch = architectures.get("hashed-bag")(n_buckets=1000, dim=8)
    before = torch.get_rng_state()
    a, b, c = arch.build(4, seed=1), arch.build(4, seed=1), arch.build(4, seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    with pytest.raises(CudBenchError, match="at least 2 classes"):
        arch.build(1, seed=0)


def test_row_adam_matches_torch_sparse_adam():
    from cud_bench.models.row_adam import RowAdam

    def trained(optimizer_type):
        torch.manual_seed(0)
        bag = torch.nn.EmbeddingBag(50, 4, mode="mean", sparse=True)
        optimizer = optimizer_type(bag.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(1)
        for _ in range(6):  # repeated ids in a batch, and rows untouched on some steps
            ids = torch.randint(0, 20, (12,), generator=gen)
            optimizer.zero_grad()
            bag(ids, torch.tensor([0, 5, 9])).pow(2).sum().backward()
            optimizer.step()
        return bag.weight.detach().clone()

    ours, theirs = trained(RowAdam), trained(torch.optim.SparseAdam)
    assert not torch.equal(ours, trained(lambda p, lr: torch.optim.SGD(p, lr=lr)))  # the comparison can fail
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    with pytest.raises(RuntimeError, match="sparse gradients only"):
        layer = torch.nn.Linear(2, 1)
        layer(torch.ones(1, 2)).sum().backward()
        RowAdam(layer.parameters()).step()
