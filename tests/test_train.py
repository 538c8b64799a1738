"""The training loop: it learns, stops early on validation loss and restores the best epoch,
is bit-reproducible and fails loudly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from transformers import BertConfig, BertModel, BertTokenizerFast

from cud_bench import calibration, losses
from cud_bench.errors import CudBenchError
from cud_bench.models.architectures import Finetune, architectures
from cud_bench.models.encoders import Encoder, EncoderSpec, encoders
from cud_bench.train import SELECTION_RULE, TrainConfig, predict_logits, train, validation_loss


def ce(logits, labels, targets):
    return F.cross_entropy(logits, labels)


def blobs(n: int, dim: int = 384, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs: any working classifier gets them right."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def mlp_data():
    arch = architectures.get("mlp")(encoder="minilm-l6", train={"epochs": 4})
    x, y = blobs(600)
    texts = [""] * 600
    return arch, arch.prepare(texts[:400], x[:400]), y[:400], arch.prepare(texts[400:], x[400:]), y[400:]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == labels))


def test_mlp_learns_and_reports_a_consistent_result(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    model = arch.build(3, seed=0)
    result = train(arch, model, tr, ytr, ce, va, yva, seed=0)
    assert SELECTION_RULE == "min-val-calibrated-nll" and result.selection_rule == "min-val-calibrated-nll/patience=3"
    assert result.epochs_run == len(result.history) == min(4, result.best_epoch + 3)
    assert [h.epoch for h in result.history] == list(range(1, result.epochs_run + 1))
    losses_ = [h.val_loss for h in result.history]
    assert result.best_epoch == 1 + losses_.index(min(losses_))  # earliest lowest
    assert result.best_val_loss == min(losses_)
    assert result.best_val_accuracy > 0.95
    final = predict_logits(arch, model, va)
    assert accuracy(final, yva) == result.best_val_accuracy
    assert validation_loss(final, yva) == pytest.approx(result.best_val_loss, rel=1e-9)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.wall_s > 0 and result.train_examples_per_s == pytest.approx(result.epochs_run * 400 / result.wall_s)
    assert result.to_dict()["history"][0]["epoch"] == 1


def test_the_best_epoch_is_restored_when_later_epochs_get_worse(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    steps_per_epoch = math.ceil(len(tr) / arch.spec.train.batch_size)
    calls = []

    def sabotaged(logits, labels, targets):
        """Learn the labels for one epoch, then learn to predict the next class instead."""
        calls.append(1)
        wrong = len(calls) > steps_per_epoch
        return F.cross_entropy(logits, (labels + 1) % 3 if wrong else labels)

    model = arch.build(3, seed=0)
    result = train(arch, model, tr, ytr, sabotaged, va, yva, seed=0)
    assert result.best_epoch == 1
    assert result.history[0].val_accuracy > 0.9 > result.history[-1].val_accuracy
    assert result.history[0].val_loss < min(h.val_loss for h in result.history[1:])
    assert accuracy(predict_logits(arch, model, va), yva) == result.history[0].val_accuracy


def test_training_stops_after_patience_epochs_without_a_lower_validation_loss(mlp_data):
    """The old rule ran every configured epoch; this one stops 3 epochs after the best."""
    _, tr, ytr, va, yva = mlp_data
    arch = architectures.get("mlp")(encoder="minilm-l6", train={"epochs": 30})
    steps_per_epoch = math.ceil(len(tr) / arch.spec.train.batch_size)
    calls = []

    def sabotaged(logits, labels, targets):
        """Learn the labels for two epochs, then learn to predict the next class instead."""
        calls.append(1)
        return F.cross_entropy(logits, (labels + 1) % 3 if len(calls) > 2 * steps_per_epoch else labels)

    model = arch.build(3, seed=0)
    result = train(arch, model, tr, ytr, sabotaged, va, yva, seed=0)
    assert result.best_epoch <= 2 and result.epochs_run == result.best_epoch + 3 == len(result.history)
    assert len(calls) == result.epochs_run * steps_per_epoch  # no further epoch was trained
    assert result.history[-1].val_accuracy < 0.1  # the sabotage was caught
    assert result.selection_rule == "min-val-calibrated-nll/patience=3"
    best = result.history[result.best_epoch - 1].val_loss
    assert validation_loss(predict_logits(arch, model, va), yva) == pytest.approx(best, rel=1e-9)
    one = architectures.get("mlp")(encoder="minilm-l6", train={"epochs": 30, "patience": 1})
    assert train(one, one.build(3, seed=0), tr, ytr, _Sabotage(steps_per_epoch), va, yva, seed=0).epochs_run <= 3
    assert one.spec.spec_hash() != architectures.get("mlp")(encoder="minilm-l6", train={"epochs": 30}).spec.spec_hash()
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


class _Sabotage:
    """Learn the labels for two epochs, then the next class."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.calls, self.limit = 0, 2 * steps_per_epoch

    def __call__(self, logits, labels, targets):
        self.calls += 1
        return F.cross_entropy(logits, (labels + 1) % 3 if self.calls > self.limit else labels)


def test_the_stopping_criterion_is_label_cross_entropy_even_for_a_kd_student(mlp_data):
    """A KD student fitting targets that contradict the labels lowers its own loss every epoch,
    but its cross-entropy against the validation labels rises: the labels decide, so it stops."""
    _, tr, ytr, va, yva = mlp_data
    arch = architectures.get("mlp")(encoder="minilm-l6", train={"epochs": 30})
    targets = np.full((len(ytr), 3), 0.01)
    targets[np.arange(len(ytr)), (ytr + 1) % 3] = 0.98  # the teacher is wrong on every row
    kd = lambda lg, y, t: losses.kd_loss(lg, t, y, lam_kd=1.0, lam_ce=0.0)  # noqa: E731
    result = train(arch, arch.build(3, seed=0), tr, ytr, kd, va, yva, seed=0, targets=targets)
    assert result.history[-1].train_loss < result.history[0].train_loss  # the KD loss keeps falling
    assert result.epochs_run == result.best_epoch + 3 <= 6  # a KD-loss criterion would run all 30
    assert result.history[-1].val_loss > result.best_val_loss



def test_the_validation_loss_is_label_cross_entropy_at_the_best_temperature():
    """A recipe that keeps its outputs soft on purpose (DUS) is judged by what it separates, not its scale."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[labels]
    T = calibration.fit_temperature(logits, labels, split="validation")
    by_hand = float(np.mean(-np.log(softmax(logits / T, axis=1)[np.arange(300), labels])))
    raw = float(np.mean(-np.log(softmax(logits, axis=1)[np.arange(300), labels])))
    assert validation_loss(logits, labels) == pytest.approx(by_hand, rel=1e-12) and by_hand <= raw
    assert validation_loss(logits / 5, labels) == pytest.approx(validation_loss(logits, labels), rel=1e-6)
    assert validation_loss(np.full((2, 3), np.inf), np.array([0, 1])) == math.inf


@pytest.mark.parametrize("name, params", [("mlp", {}), ("hashed-bag", {"n_buckets": 4096})])
def test_the_same_seed_gives_bit_identical_results(name, params):
    arch = architectures.get(name)(train={"epochs": 2}, **params)
    x, y = blobs(300, classes=4)
    texts = [f"word{label} noise{i % 7}" for i, label in enumerate(y)]
    tr, va = arch.prepare(texts[:200], x[:200]), arch.prepare(texts[200:], x[200:])

    def run(seed):
        model = arch.build(4, seed=seed)
        result = train(arch, model, tr, y[:200], ce, va, y[200:], seed=seed)
        return predict_logits(arch, model, va).tobytes(), [(h.train_loss, h.val_loss, h.val_accuracy) for h in result.history]

    first = run(7)
    assert run(7) == first
    assert run(8)[0] != first[0]


def test_training_leaves_the_callers_generator_alone(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    model = arch.build(3, seed=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(arch, model, tr, ytr, ce, va, yva, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_soft_targets_reach_the_loss_row_by_row(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    targets = np.full((len(ytr), 3), 0.05, dtype=np.float64)
    targets[np.arange(len(ytr)), ytr] = 0.9
    seen = []

    def kd(logits, labels, batch_targets):
        assert batch_targets.dtype == torch.float32 and batch_targets.shape == logits.shape
        seen.append(torch.equal(batch_targets.argmax(dim=1), labels))
        return losses.kd_loss(logits, batch_targets, labels)

    result = train(arch, arch.build(3, seed=0), tr, ytr, kd, va, yva, seed=0, targets=targets)
    assert len(seen) == 4 * math.ceil(400 / arch.spec.train.batch_size) and all(seen)
    assert result.best_val_accuracy > 0.95


def test_a_diverging_loss_names_the_epoch_and_step(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    calls = []

    def diverging(logits, labels, targets):
        calls.append(1)
        return F.cross_entropy(logits, labels) * (math.nan if len(calls) == 10 else 1.0)

    steps_per_epoch = math.ceil(len(tr) / arch.spec.train.batch_size)  # 4 (400 examples, batch 128)
    epoch, step = divmod(10 - 1, steps_per_epoch)  # call 10 is epoch 3, step 2
    with pytest.raises(losses.NonFiniteLossError, match=f"epoch {epoch + 1}, step {step + 1}: the training loss is nan"):
        train(arch, arch.build(3, seed=0), tr, ytr, diverging, va, yva, seed=0)
    infinite = type(tr)(torch.full((400, 384), math.inf))  # prepare() would refuse these features

    def checked_ce(logits, labels, targets):
        return losses.cross_entropy(logits, labels)  # raises NonFiniteLossError itself

    with pytest.raises(losses.NonFiniteLossError, match="epoch 1, step 1: cross-entropy is"):
        train(arch, arch.build(3, seed=0), infinite, ytr, checked_ce, va, yva, seed=0)


def test_mismatched_labels_are_refused(mlp_data):
    arch, tr, ytr, va, yva = mlp_data
    with pytest.raises(CudBenchError, match="400 integers"):
        train(arch, arch.build(3, seed=0), tr, ytr[:-1], ce, va, yva, seed=0)
    with pytest.raises(CudBenchError, match=r"targets must have shape \(400, C\)"):
        train(arch, arch.build(3, seed=0), tr, ytr, ce, va, yva, seed=0, targets=np.ones(400))


def test_hashed_bag_learns_a_small_text_task():
    rng = np.random.default_rng(0)
    cues = [["great", "wonderful", "loved"], ["awful", "boring", "hated"], ["ticket", "price", "queue"]]
    filler = ["the", "film", "a", "it", "was", "and", "of", "story", "plot", "really"]

    def text(label: int) -> str:
        words = list(rng.choice(filler, 6)) + [str(rng.choice(cues[label]))]
        return " ".join(rng.permutation(words))

    y = rng.integers(0, 3, 900)
    texts = [text(label) for label in y]
    arch = architectures.get("hashed-bag")(n_buckets=4096, train={"epochs": 5})
    tr, va = arch.prepare(texts[:600], None), arch.prepare(texts[600:], None)
    model = arch.build(3, seed=0)
    result = train(arch, model, tr, y[:600], ce, va, y[600:], seed=0)
    assert result.best_val_accuracy > 0.95
    assert model.embedding.weight.grad is None or model.embedding.weight.grad.is_sparse


# -- finetune on a tiny BERT ---------------------------------------------------------------

WORDS = ["good", "great", "fun", "bad", "dull", "awful", "the", "movie", "was", "very", "plot", "and"]


@pytest.fixture
def tiny_encoder(tmp_path):
    """A 2-layer, 32-wide BERT with a word-level vocabulary, registered as an encoder."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(tmp_path / "model")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "model")
    spec = EncoderSpec(id="tiny-bert-test", hub_name="(test)", layers=2, hidden_size=32, packages=())
    encoders.register(spec.id, Encoder(spec, (), lambda: tmp_path / "model"))
    yield spec.id
    encoders.unregister(spec.id)


def sentiment_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    cue = [["good", "great", "fun"], ["bad", "dull", "awful"]]
    texts = [" ".join(["the", "movie", "was", "very", *rng.choice(cue[label], rng.integers(1, 4))]) for label in y]
    return texts, y


def test_finetune_trains_the_encoder_end_to_end(tiny_encoder):
    arch = architectures.get("finetune")(encoder=tiny_encoder, train={"epochs": 1, "batch_size": 8, "lr": 1e-3})
    texts, y = sentiment_texts(48, seed=0)
    tr, va = arch.prepare(texts[:32], None), arch.prepare(texts[32:], None)
    assert int(tr.lengths.max()) <= 128 and tr.ids[0, 0] == arch.tokenizer.cls_token_id
    model = arch.build(2, seed=0)
    before = model.encoder.embeddings.word_embeddings.weight.detach().clone()
    result = train(arch, model, tr, y[:32], ce, va, y[32:], seed=0)
    assert result.epochs_run == 1 and result.best_epoch == 1
    assert not torch.equal(model.encoder.embeddings.word_embeddings.weight, before)
    assert predict_logits(arch, model, va, batch_size=5).shape == (16, 2)


def test_finetune_truncates_to_max_length(tiny_encoder):
    arch = architectures.get("finetune")(encoder=tiny_encoder, max_length=6)
    inputs = arch.prepare(["the movie was very very good and fun", "fun"], None)
    assert inputs.lengths.tolist() == [6, 3]  # [CLS] 4 words [SEP] / [CLS] fun [SEP]
    assert inputs.ids.shape == (2, 6)


def test_finetune_schedule_warms_up_linearly_then_decays_by_cosine(tiny_encoder):
    seen: list[float] = []

    class Recording(Finetune):
        def optimizers(self, model):
            self.used = super().optimizers(model)
            return self.used

    arch = Recording(encoder=tiny_encoder, train={"epochs": 5, "batch_size": 4, "lr": 1e-3})
    texts, y = sentiment_texts(40, seed=1)
    tr, va = arch.prepare(texts, None), arch.prepare(texts[:8], None)

    def recording_ce(logits, labels, targets):
        seen.append(arch.used[0].param_groups[0]["lr"])  # the rate this step will use
        return F.cross_entropy(logits, labels)

    train(arch, arch.build(2, seed=0), tr, y, recording_ce, va, y[:8], seed=0)
    total, warmup = 50, 5  # 5 epochs x 10 steps; 10% warm-up
    expected = [1e-3 * s / warmup for s in range(warmup)] + [
        1e-3 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(warmup, total)
    ]
    assert seen == pytest.approx(expected, abs=1e-12)
    assert seen[0] == 0 and max(seen) == pytest.approx(1e-3) and seen[-1] < 2e-6
