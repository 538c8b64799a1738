"""Golden values for the shared losses, computed by hand with math.exp/math.log."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cud_bench.errors import CudBenchError
from cud_bench.losses import (
    FocalParams,
    KDParams,
    LabelSmoothingParams,
    NonFiniteLossError,
    check_finite,
    cross_entropy,
    focal_loss,
    kd_loss,
    label_smoothing_loss,
    temper,
)

LOGITS = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [0.0, 0.0, 3.0]]
LABELS = [0, 0, 2]  # right, wrong, right


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS)


def test_cross_entropy_golden(batch):
    expected = mean([-math.log(softmax(row)[y]) for row, y in zip(LOGITS, LABELS)])
    # first row by hand: p_0 = e^2 / (e^2 + e^1 + e^0.1)
    first = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.0) + math.exp(0.1)))
    assert first == pytest.approx(0.4170300, abs=1e-6)
    assert cross_entropy(*batch).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_golden(batch, eps):
    c = 3
    expected = mean(
        [
            -((1 - eps) * math.log(softmax(row)[y]) + eps / c * sum(math.log(p) for p in softmax(row)))
            for row, y in zip(LOGITS, LABELS)
        ]
    )
    assert label_smoothing_loss(*batch, eps=eps).item() == pytest.approx(expected, rel=1e-12)
    assert label_smoothing_loss(*batch, LabelSmoothingParams(eps=eps)).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(F.cross_entropy(*batch, label_smoothing=eps).item(), rel=1e-12)


def test_focal_golden_per_class_alpha(batch):
    gamma, alpha = 2.0, (0.25, 0.5, 1.0)
    expected = mean(
        [
            -alpha[y] * (1 - softmax(row)[y]) ** gamma * math.log(softmax(row)[y])
            for row, y in zip(LOGITS, LABELS)
        ]
    )
    assert focal_loss(*batch, gamma=gamma, alpha=alpha).item() == pytest.approx(expected, rel=1e-12)
    assert focal_loss(*batch, gamma=gamma, alpha=torch.tensor(alpha)).item() == pytest.approx(expected, rel=1e-12)


def test_focal_golden_scalar_alpha_and_reduction_to_ce(batch):
    expected = mean([-0.5 * (1 - softmax(r)[y]) ** 3 * math.log(softmax(r)[y]) for r, y in zip(LOGITS, LABELS)])
    assert focal_loss(*batch, FocalParams(gamma=3.0, alpha=0.5)).item() == pytest.approx(expected, rel=1e-12)
    assert focal_loss(*batch, gamma=0.0).item() == pytest.approx(F.cross_entropy(*batch).item(), rel=1e-12)


def test_focal_is_exact_when_gold_probability_rounds_to_one():
    logits = torch.tensor([[40.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = focal_loss(logits, torch.tensor([0]), gamma=10.0)
    loss.backward()
    # 1 - p_y = 2 e^-40 / (1 + 2 e^-40); the loss is ~ (2e^-40)^10 * 2e^-40: tiny, not 0 or NaN
    one_minus = 2 * math.exp(-40) / (1 + 2 * math.exp(-40))
    assert loss.item() == pytest.approx(-(one_minus**10) * math.log1p(-one_minus), rel=1e-9)
    assert torch.isfinite(logits.grad).all()


TARGETS = [[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]


def test_kd_golden_with_temperature_and_weights(batch):
    T, lam_kd, lam_ce = 2.0, 0.8, 0.2
    kls = []
    for row, target in zip(LOGITS, TARGETS):
        tempered = [t ** (1 / T) for t in target]  # softmax(log t / T) = t^(1/T) renormalised
        q = [v / sum(tempered) for v in tempered]
        s = softmax([v / T for v in row])
        kls.append(sum(qk * (math.log(qk) - math.log(sk)) for qk, sk in zip(q, s) if qk > 0))
    ce = mean([-math.log(softmax(row)[y]) for row, y in zip(LOGITS, LABELS)])
    expected = lam_kd * T**2 * mean(kls) + lam_ce * ce
    logits, labels = batch
    targets = torch.tensor(TARGETS, dtype=torch.float64)
    loss = kd_loss(logits, targets, labels, T=T, lam_kd=lam_kd, lam_ce=lam_ce)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert kd_loss(logits, targets, labels, KDParams()).item() == pytest.approx(expected, rel=1e-12)  # the defaults
    # the T^2 factor: with only the KL term, the loss is T^2 * KL exactly
    kl_only = kd_loss(logits, targets, labels, T=T, lam_kd=1.0, lam_ce=0.0)
    assert kl_only.item() == pytest.approx(4 * mean(kls), rel=1e-12)


def test_kd_is_plain_kl_at_t1_and_zero_when_student_matches():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    labels = torch.tensor(LABELS)
    targets = torch.softmax(torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], dtype=torch.float64), -1)
    reference = F.kl_div(F.log_softmax(logits, -1), targets, reduction="batchmean")
    assert kd_loss(logits, targets, labels, T=1.0, lam_kd=1.0, lam_ce=0.0).item() == pytest.approx(reference.item())
    # a student whose logits are log p_tilde matches q_T at every T: only the CE term is left
    student = torch.log(targets)
    for T in (1.0, 2.0, 4.0):
        ce = F.cross_entropy(student, labels).item()
        assert kd_loss(student, targets, labels, T=T).item() == pytest.approx(0.2 * ce, abs=1e-12)


def test_kd_zero_target_mass_gives_finite_loss_and_gradient():
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    kd_loss(logits, torch.tensor(TARGETS, dtype=torch.float64), torch.tensor(LABELS), T=4.0).backward()
    assert torch.isfinite(logits.grad).all()
    assert temper(torch.tensor([[0.5, 0.5, 0.0]]), 4.0).tolist() == [[0.5, 0.5, 0.0]]  # zeros stay zero


def test_temper_golden():
    q = temper(torch.tensor([[0.64, 0.36]], dtype=torch.float64), 2.0)
    assert q.tolist()[0] == pytest.approx([0.8 / 1.4, 0.6 / 1.4], rel=1e-12)


def test_non_finite_loss_is_a_clear_error(batch):
    logits, labels = batch
    logits = logits.clone()
    logits[1, 1] = float("nan")
    for loss in (cross_entropy, focal_loss, label_smoothing_loss):
        with pytest.raises(NonFiniteLossError, match="diverged"):
            loss(logits, labels)
    assert issubclass(NonFiniteLossError, CudBenchError)
    assert check_finite(torch.tensor(1.5)).item() == 1.5


def test_bad_inputs_raise_value_error(batch):
    logits, labels = batch
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cross_entropy(logits, torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="labels must be"):
        cross_entropy(logits, labels[:2])
    with pytest.raises(ValueError, match="shape"):
        cross_entropy(logits[0], labels)
    with pytest.raises(ValueError, match="sum to 1"):
        kd_loss(logits, torch.full((3, 3), 0.5, dtype=torch.float64), labels)
    with pytest.raises(ValueError, match="3 weights"):
        focal_loss(logits, labels, alpha=(1.0, 2.0))


def test_params_validate_and_hash():
    for bad in (dict(eps=1.0), dict(eps=-0.1)):
        with pytest.raises(ValueError):
            LabelSmoothingParams(**bad)
    for bad in (dict(gamma=-1.0), dict(alpha=0.0), dict(alpha=(1.0, -1.0))):
        with pytest.raises(ValueError):
            FocalParams(**bad)
    for bad in (dict(T=0.0), dict(T=float("inf")), dict(lam_kd=-0.1)):
        with pytest.raises(ValueError):
            KDParams(**bad)
    per_class = FocalParams(alpha=torch.tensor([0.5, 2.0]))
    assert per_class.alpha == (0.5, 2.0)  # stored as a tuple: hashable and JSON-able
    assert per_class.spec_hash() == FocalParams(alpha=[0.5, 2.0]).spec_hash() != FocalParams().spec_hash()
    assert KDParams().to_dict() == {"T": 2.0, "lam_kd": 0.8, "lam_ce": 0.2}


def test_keywords_override_a_spec_and_other_specs_are_refused(batch):
    overridden = label_smoothing_loss(*batch, LabelSmoothingParams(eps=0.3), eps=0.1)
    assert overridden.item() == pytest.approx(F.cross_entropy(*batch, label_smoothing=0.1).item())
    with pytest.raises(TypeError, match="LabelSmoothingParams"):
        label_smoothing_loss(*batch, FocalParams())
