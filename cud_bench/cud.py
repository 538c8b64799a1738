"""The method under study: Calibrated Uncertainty Distillation (CUD).

CUD (Kim et al., arXiv 2602.12687) shapes the teacher's predictive
distribution before it is transferred, in two pieces:

* :func:`dus_loss` -- difficulty-aware uncertainty shaping, the teacher's
  training loss: a focal term plus an entropy reward gated by how hard the
  example is for the teacher.
* :func:`wclip` -- wrong-mass clipping of the teacher's probabilities on
  labelled training examples: mass moves from a wrong top class to the gold
  class.

The student then learns from the result with :func:`cud_bench.losses.kd_loss`.
No public implementation exists, so this module is the reference one; the
formulas follow docs/cud-method.md term by term.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cud_bench.losses import (
    ROW_SUM_ATOL,
    check_finite,
    check_logits_labels,
    entropy,
    focal_terms,
    normalize_alpha,
    resolve_params,
)
from cud_bench.specs import Spec


@dataclasses.dataclass(frozen=True)
class DUSParams(Spec):
    """Hyperparameters of the DUS loss.

    Stated by the paper: ``lam_h = 0.1``, ``gamma = 10``, ``alpha = 1``. Ours (the
    paper is silent; recorded with every result and swept): ``lam_ce = 0``,
    ``lam_f = 1``, ``tau_gate = 0.5``, ``rho = 0.1``, ``beta = 2``.

    ``lam_ce = 0`` because the paper reports that raising gamma from 3 to 10
    softens the teacher; that is only possible when the focal term dominates.
    Beside a full-weight CE term, ``(1 - p_y)^10`` is ~0 once ``p_y > 0.5`` and
    gamma would change almost nothing (a prototype with ``lam_ce = 1`` gave a
    teacher as confident as the plain CE one).

    ``alpha`` is one weight for every class or a tuple of C per-class weights.
    These defaults are release 1.0's (the method ``cud-lamce0``); the default ``cud``
    sets the four unstated values per task by the faithfulness rule
    (:mod:`cud_bench.method_defs.dus_per_task`).
    """

    lam_ce: float = 0.0
    lam_f: float = 1.0
    alpha: float | tuple[float, ...] = 1.0
    gamma: float = 10.0
    lam_h: float = 0.1
    tau_gate: float = 0.5
    rho: float = 0.1
    beta: float = 2.0

    def __post_init__(self) -> None:
        weights = {"lam_ce": self.lam_ce, "lam_f": self.lam_f, "lam_h": self.lam_h, "rho": self.rho}
        if any(not (math.isfinite(v) and v >= 0) for v in weights.values()):
            raise ValueError(f"DUS weights must be finite and >= 0, got {weights}")
        if self.gamma < 0 or self.beta < 0:
            raise ValueError(f"DUS gamma and beta must be >= 0, got gamma={self.gamma}, beta={self.beta}")
        object.__setattr__(self, "alpha", normalize_alpha(self.alpha))


@dataclasses.dataclass(frozen=True)
class WClipParams(Spec):
    """W-Clip's cap on the moved mass: ``delta = min(eta * p[k*], m * (p[k*] - p[y]))``.

    Both lie in [0, 1]; ``eta <= 1`` keeps the clipped top class non-negative.
    The paper's defaults are ``eta = 0.5``, ``m = 0.7``.
    """

    eta: float = 0.5
    m: float = 0.7

    def __post_init__(self) -> None:
        if not (0.0 <= self.eta <= 1.0 and 0.0 <= self.m <= 1.0):
            raise ValueError(f"W-Clip eta and m must lie in [0, 1], got eta={self.eta}, m={self.m}")


def dus_loss(
    logits: torch.Tensor, labels: torch.Tensor, params: DUSParams | None = None, **hparams: Any
) -> torch.Tensor:
    """Batch mean of the DUS loss, a scalar (it can be negative: the entropy term is a reward)::

        L = lam_ce * (-log p_y)
          + lam_f  * (-alpha_y * (1 - p_y)^gamma * log p_y)
          - lam_h  * w(x) * H(p)

    with ``H`` in nats and the gate ``w(x) = 1[p_y < tau_gate] + rho * (1 - p_y)^beta``
    (see :func:`dus_gate`). Takes a :class:`DUSParams`, its fields as keywords, or both.
    """
    p = resolve_params(DUSParams, params, hparams)
    check_logits_labels(logits, labels)
    log_probs = F.log_softmax(logits, dim=-1)
    log_py = log_probs.gather(1, labels[:, None]).squeeze(1)
    gate = dus_gate(log_py.detach().exp(), p.tau_gate, p.rho, p.beta)
    per_example = (
        p.lam_ce * -log_py
        + p.lam_f * focal_terms(log_probs, labels, p.gamma, p.alpha)
        - p.lam_h * gate * entropy(log_probs)
    )
    return check_finite(per_example.mean(), "DUS loss")


def dus_gate(p_gold: torch.Tensor, tau_gate: float, rho: float, beta: float) -> torch.Tensor:
    """The difficulty gate ``w(x) = 1[p_y < tau_gate] + rho * (1 - p_y)^beta``, shape (n,).

    :func:`dus_loss` passes the gold probability detached, so ``w`` acts as a
    constant weight per example. The paper does not say whether gradients flow
    through ``w``; detaching keeps the third term a pure entropy reward. Letting
    them flow would add a gradient that lowers ``p_y`` to enlarge ``w`` (and so
    the reward): a push away from the gold class that the paper never describes.
    """
    return (p_gold < tau_gate).to(p_gold.dtype) + rho * (1.0 - p_gold).clamp_min(0.0).pow(beta)


def wclip(
    probs: Any, labels: Any, params: WClipParams | None = None, *, return_changed: bool = False, **hparams: Any
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """W-Clip the teacher's probabilities: float64 array (n, C), a new copy.

    For each row with ``k* = argmax p``: if ``k* == y`` (or ``p[y]`` ties the top)
    the row is unchanged; otherwise ``delta = min(eta * p[k*], m * (p[k*] - p[y]))``
    moves from ``p[k*]`` to ``p[y]`` and every other class is kept. Rows still sum
    to 1 and stay non-negative. With the defaults the gold class ends strictly
    above the former top class whenever ``p[y] > 0`` (level with it if
    ``p[y] == 0``), though not necessarily above every other class.

    ``probs`` (numpy or CPU torch, rows summing to 1) and integer ``labels`` (n,)
    must come from labelled training examples: the gold label is required.
    With ``return_changed=True`` also returns a boolean mask (n,) of the rows
    that moved (``delta > 0``), for records.
    """
    p = resolve_params(WClipParams, params, hparams)
    probs = np.asarray(probs, dtype=np.float64).copy()  # the input is never modified
    labels = np.asarray(labels)
    check_probs_labels(probs, labels)
    rows = np.arange(len(labels))
    top = probs.argmax(axis=1)
    p_top, p_gold = probs[rows, top], probs[rows, labels]
    # A right row has p_top == p_gold, so delta = 0 there: the paper's "unchanged" branch needs no case.
    delta = np.minimum(p.eta * p_top, p.m * (p_top - p_gold))
    probs[rows, labels] += delta
    probs[rows, top] -= delta
    return (probs, delta > 0) if return_changed else probs


def check_probs_labels(probs: np.ndarray, labels: np.ndarray) -> None:
    """Raise ValueError unless probs is (n, C) with non-negative rows summing to 1 and labels n ints in [0, C)."""
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape (n, C), got {probs.shape}")
    if labels.shape != probs.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {probs.shape[0]} integers, got {labels.dtype} {labels.shape}")
    if labels.size and not (labels.min() >= 0 and labels.max() < probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got [{labels.min()}, {labels.max()}]")
    if not np.all(probs >= 0) or not np.allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=ROW_SUM_ATOL):
        raise ValueError("probabilities must be non-negative and each row must sum to 1")
