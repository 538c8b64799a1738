"""Golden values for DUS and W-Clip (docs/cud-method.md), computed by hand with math.exp/math.log."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cud_bench.cud import DUSParams, WClipParams, dus_gate, dus_loss, wclip


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def dus_by_hand(row, y, lam_ce, lam_f, alpha_y, gamma, lam_h, tau_gate, rho, beta):
    p = softmax(row)
    gate = (1.0 if p[y] < tau_gate else 0.0) + rho * (1 - p[y]) ** beta
    entropy = -sum(pk * math.log(pk) for pk in p)
    return lam_ce * -math.log(p[y]) + lam_f * -alpha_y * (1 - p[y]) ** gamma * math.log(p[y]) - lam_h * gate * entropy


# p_y = 0.786 (easy: gate indicator off) and p_y = 0.332 (hard: gate indicator on)
EASY, HARD = [2.0, 0.5, -1.0], [1.0, 1.5, 0.0]
DEFAULTS = dict(lam_ce=0.0, lam_f=1.0, gamma=10.0, lam_h=0.1, tau_gate=0.5, rho=0.1, beta=2.0)
ALL_TERMS = dict(lam_ce=0.3, lam_f=0.7, alpha=(0.5, 2.0, 1.0), gamma=3.0, lam_h=0.2, tau_gate=0.4, rho=0.25, beta=1.5)


def _loss(rows, labels, **hparams):
    return dus_loss(torch.tensor(rows, dtype=torch.float64), torch.tensor(labels), **hparams).item()


def test_dus_defaults_are_the_documented_ones():
    assert DUSParams().to_dict() == {**DEFAULTS, "alpha": 1.0}


def test_dus_easy_branch_golden():
    p_y = math.exp(2.0) / (math.exp(2.0) + math.exp(0.5) + math.exp(-1.0))
    assert p_y == pytest.approx(0.7856, abs=1e-4) and p_y >= 0.5
    # defaults: focal term and gate w = 0 + 0.1 (1 - p_y)^2 written out
    p = softmax(EASY)
    h = -sum(pk * math.log(pk) for pk in p)
    expected = -((1 - p_y) ** 10) * math.log(p_y) - 0.1 * (0.1 * (1 - p_y) ** 2) * h
    assert _loss([EASY], [0]) == pytest.approx(expected, rel=1e-12)


def test_dus_hard_branch_golden():
    p_y = math.exp(1.0) / (math.exp(1.0) + math.exp(1.5) + math.exp(0.0))
    assert p_y == pytest.approx(0.3315, abs=1e-4) and p_y < 0.5
    p = softmax(HARD)
    h = -sum(pk * math.log(pk) for pk in p)
    expected = -((1 - p_y) ** 10) * math.log(p_y) - 0.1 * (1.0 + 0.1 * (1 - p_y) ** 2) * h
    assert _loss([HARD], [0]) == pytest.approx(expected, rel=1e-12)


def test_dus_every_term_batch_mean():
    alpha = ALL_TERMS["alpha"]
    scalars = {k: v for k, v in ALL_TERMS.items() if k != "alpha"}
    # labels 0 (p_y = 0.786, above tau 0.4), 2 (p_y = 0.122, below) and 1 (p_y = 0.547, above)
    rows, labels = [EASY, HARD, HARD], [0, 2, 1]
    expected = sum(dus_by_hand(r, y, alpha_y=alpha[y], **scalars) for r, y in zip(rows, labels)) / 3
    assert _loss(rows, labels, **ALL_TERMS) == pytest.approx(expected, rel=1e-12)
    assert _loss(rows, labels, params=DUSParams(**ALL_TERMS)) == pytest.approx(expected, rel=1e-12)


def test_dus_gate_is_strict_at_the_threshold():
    # two equal logits: p_y = 0.5 exactly, so 1[p_y < 0.5] = 0 and w = 0.1 * 0.25
    expected = -(0.5**10) * math.log(0.5) - 0.1 * (0.1 * 0.25) * math.log(2)
    assert _loss([[0.0, 0.0]], [0]) == pytest.approx(expected, rel=1e-12)
    gates = dus_gate(torch.tensor([0.5, 0.4999], dtype=torch.float64), 0.5, 0.1, 2.0)
    assert gates.tolist() == pytest.approx([0.025, 1.0 + 0.1 * 0.5001**2], rel=1e-12)


def test_dus_reduces_to_cross_entropy_and_focal():
    logits, labels = torch.tensor([EASY, HARD], dtype=torch.float64), torch.tensor([0, 0])
    ce = F.cross_entropy(logits, labels).item()
    assert dus_loss(logits, labels, lam_ce=1.0, lam_f=0.0, lam_h=0.0).item() == pytest.approx(ce, rel=1e-12)
    assert dus_loss(logits, labels, lam_f=1.0, gamma=0.0, lam_h=0.0).item() == pytest.approx(ce, rel=1e-12)


def test_dus_gate_is_detached():
    """Gradients equal those of a hand-built loss whose gate is a number, and differ from an undetached gate."""
    rows, labels = [EASY, HARD], [0, 0]
    hp = dict(lam_ce=0.2, lam_f=1.0, gamma=2.0, lam_h=0.5, tau_gate=0.5, rho=0.5, beta=2.0)
    gates = []
    for row, y in zip(rows, labels):  # the gate by hand, as plain floats
        p_y = softmax(row)[y]
        gates.append((1.0 if p_y < hp["tau_gate"] else 0.0) + hp["rho"] * (1 - p_y) ** hp["beta"])

    def hand_loss(z: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(z, -1)
        log_py = log_p[torch.arange(2), torch.tensor(labels)]
        p_y = log_py.exp()
        h = -(log_p.exp() * log_p).sum(-1)
        per = hp["lam_ce"] * -log_py + hp["lam_f"] * -((1 - p_y) ** hp["gamma"]) * log_py - hp["lam_h"] * gate * h
        return per.mean()

    def grad(fn) -> torch.Tensor:
        z = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
        fn(z).backward()
        return z.grad

    ours = grad(lambda z: dus_loss(z, torch.tensor(labels), **hp))
    constant_gate = grad(lambda z: hand_loss(z, torch.tensor(gates, dtype=torch.float64)))

    def flowing(z):
        p_y = torch.softmax(z, -1)[torch.arange(2), torch.tensor(labels)]
        return hand_loss(z, (p_y < hp["tau_gate"]).double() + hp["rho"] * (1 - p_y) ** hp["beta"])

    assert torch.allclose(ours, constant_gate, rtol=1e-12, atol=1e-12)
    assert (ours - grad(flowing)).abs().max() > 1e-3


def test_dus_validates_its_params():
    for bad in (dict(lam_h=-0.1), dict(rho=float("nan")), dict(gamma=-1.0), dict(alpha=(1.0, 0.0))):
        with pytest.raises(ValueError):
            DUSParams(**bad)
    assert DUSParams(alpha=torch.tensor([1.0, 2.0])).alpha == (1.0, 2.0)


# --- W-Clip --------------------------------------------------------------------------------------


def test_wclip_teacher_right_row_is_unchanged():
    probs = np.array([[0.6, 0.3, 0.1]])
    out, changed = wclip(probs, [0], return_changed=True)
    assert out.tolist() == [[0.6, 0.3, 0.1]] and changed.tolist() == [False]


def test_wclip_wrong_row_delta_capped_by_eta():
    # k* = 1: eta p[k*] = 0.5 * 0.7 = 0.35 < m (p[k*] - p[y]) = 0.7 * 0.6 = 0.42, so delta = 0.35
    out = wclip(np.array([[0.1, 0.7, 0.2]]), [0])
    np.testing.assert_allclose(out, [[0.1 + 0.35, 0.7 - 0.35, 0.2]], rtol=0, atol=1e-15)


def test_wclip_wrong_row_delta_capped_by_margin():
    # k* = 1: eta p[k*] = 0.25 > m (p[k*] - p[y]) = 0.7 * 0.2 = 0.14, so delta = 0.14
    out = wclip(np.array([[0.3, 0.5, 0.2]]), [0])
    np.testing.assert_allclose(out, [[0.3 + 0.14, 0.5 - 0.14, 0.2]], rtol=0, atol=1e-15)


def test_wclip_custom_eta_m_and_batch():
    probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.7, 0.2], [0.3, 0.5, 0.2]])
    # eta = 0.2, m = 0.9: row 2 delta = min(0.14, 0.54) = 0.14; row 3 delta = min(0.1, 0.18) = 0.1
    expected = [[0.6, 0.3, 0.1], [0.24, 0.56, 0.2], [0.4, 0.4, 0.2]]
    np.testing.assert_allclose(wclip(probs, [0, 0, 0], eta=0.2, m=0.9), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(wclip(probs, [0, 0, 0], WClipParams(eta=0.2, m=0.9)), expected, rtol=0, atol=1e-15)


def test_wclip_gold_beats_former_top_but_not_necessarily_every_class():
    # delta = min(0.25, 0.7 * 0.45) = 0.25: gold 0.30 > former top 0.25, but class 2 keeps 0.45
    out = wclip(np.array([[0.05, 0.5, 0.45]]), [0])
    np.testing.assert_allclose(out, [[0.30, 0.25, 0.45]], rtol=0, atol=1e-15)


def test_wclip_tie_with_gold_is_left_alone():
    out, changed = wclip(np.array([[0.4, 0.4, 0.2]]), [1], return_changed=True)
    assert out.tolist() == [[0.4, 0.4, 0.2]] and changed.tolist() == [False]


def test_wclip_properties_on_random_teachers():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(2000, 7))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 7, size=2000)
    before = probs.copy()
    out, changed = wclip(probs, labels, return_changed=True)
    rows, top = np.arange(2000), probs.argmax(1)
    wrong = top != labels
    assert np.array_equal(probs, before)  # the input is not modified
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=0, atol=1e-12)
    assert (out >= 0).all()
    assert np.array_equal(changed, wrong) and 0.5 < wrong.mean() < 0.95
    assert np.array_equal(out[~wrong], probs[~wrong])
    assert (out[rows[wrong], labels[wrong]] > out[rows[wrong], top[wrong]]).all()
    untouched = np.ones_like(probs, dtype=bool)
    untouched[rows, labels] = untouched[rows, top] = False
    assert np.array_equal(out[untouched], probs[untouched])


def test_wclip_accepts_torch_and_refuses_bad_input():
    out = wclip(torch.tensor([[0.1, 0.7, 0.2]]), torch.tensor([0]))
    assert out.dtype == np.float64 and out[0, 0] == pytest.approx(0.45, abs=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        wclip(np.array([[0.5, 0.7]]), [0])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        wclip(np.array([[0.5, 0.5]]), [2])
    with pytest.raises(ValueError, match="integers"):
        wclip(np.array([[0.5, 0.5]]), [0.0])
    for bad in (dict(eta=1.5), dict(m=-0.1)):
        with pytest.raises(ValueError, match="eta and m"):
            WClipParams(**bad)
