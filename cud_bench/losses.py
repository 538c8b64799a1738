"""Classification and distillation losses shared by teachers and students.

Every loss takes logits of shape (n, C) and integer labels of shape (n,) and
returns the batch mean as a scalar tensor. Hyperparameters live in frozen
:class:`~cud_bench.specs.Spec` dataclasses so that they are hashed and stored
with every result; each loss accepts such a spec, plain keyword arguments, or
both (keywords override the spec's fields).

All log-probabilities come from ``log_softmax`` (never ``log(softmax)``), and
every public loss passes through :func:`check_finite`, so a diverging run stops
with one clear :class:`NonFiniteLossError` instead of training on NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from cud_bench.errors import CudBenchError
from cud_bench.specs import Spec

P = TypeVar("P", bound=Spec)

# Tolerance on the row sums of a target distribution (float32 softmax over a
# few hundred classes is off by ~1e-6; anything beyond this is a bug upstream).
ROW_SUM_ATOL = 1e-3


class NonFiniteLossError(CudBenchError):
    """A loss evaluated to NaN or infinity: the run has diverged or its inputs are bad."""


@dataclasses.dataclass(frozen=True)
class LabelSmoothingParams(Spec):
    """Cross-entropy against ``(1 - eps) * onehot(y) + eps / C``; ``0 <= eps < 1``."""

    eps: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps < 1.0:
            raise ValueError(f"label smoothing eps must be in [0, 1), got {self.eps}")


@dataclasses.dataclass(frozen=True)
class FocalParams(Spec):
    """Focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` (Lin et al. 2017).

    ``alpha`` is one positive weight for every class or a tuple of C per-class
    weights (a tensor or list is stored as a tuple so the spec stays hashable).
    """

    gamma: float = 2.0
    alpha: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {self.gamma}")
        object.__setattr__(self, "alpha", normalize_alpha(self.alpha))


@dataclasses.dataclass(frozen=True)
class KDParams(Spec):
    """Tempered distillation: ``lam_kd * T^2 * KL(q_T || softmax(z_s / T)) + lam_ce * CE``."""

    T: float = 2.0
    lam_kd: float = 0.8
    lam_ce: float = 0.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.T) and self.T > 0):
            raise ValueError(f"KD temperature T must be a positive number, got {self.T}")
        if self.lam_kd < 0 or self.lam_ce < 0:
            raise ValueError(f"KD weights must be non-negative, got lam_kd={self.lam_kd}, lam_ce={self.lam_ce}")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean ``-log p_y``."""
    check_logits_labels(logits, labels)
    return check_finite(F.cross_entropy(logits, labels), "cross-entropy")


def label_smoothing_loss(
    logits: torch.Tensor, labels: torch.Tensor, params: LabelSmoothingParams | None = None, **hparams: Any
) -> torch.Tensor:
    """Mean cross-entropy against the smoothed target ``(1 - eps) onehot(y) + eps / C``."""
    p = resolve_params(LabelSmoothingParams, params, hparams)
    check_logits_labels(logits, labels)
    return check_finite(F.cross_entropy(logits, labels, label_smoothing=p.eps), "label-smoothing loss")


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, params: FocalParams | None = None, **hparams: Any
) -> torch.Tensor:
    """Mean focal loss; ``gamma = 0`` and ``alpha = 1`` give cross-entropy."""
    p = resolve_params(FocalParams, params, hparams)
    check_logits_labels(logits, labels)
    terms = focal_terms(F.log_softmax(logits, dim=-1), labels, p.gamma, p.alpha)
    return check_finite(terms.mean(), "focal loss")


def kd_loss(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    labels: torch.Tensor,
    params: KDParams | None = None,
    **hparams: Any,
) -> torch.Tensor:
    """Tempered distillation towards a given target distribution, plus cross-entropy.

    ``target_probs`` (n, C) is the teacher's (possibly W-clipped or
    temperature-scaled) distribution ``p_tilde``; it is tempered here as
    ``q_T = softmax(log p_tilde / T)`` (see :func:`temper`). The KL term is summed
    over classes, averaged over the batch and multiplied by ``T^2`` so that its
    gradient scale does not shrink as T grows (Hinton et al. 2015). The CE term
    uses the untempered student logits.
    """
    p = resolve_params(KDParams, params, hparams)
    check_logits_labels(student_logits, labels)
    check_distribution(target_probs, student_logits.shape)
    # The targets are constants: no gradient may reach whatever produced them.
    q = temper(target_probs.detach().to(dtype=student_logits.dtype, device=student_logits.device), p.T)
    log_s = F.log_softmax(student_logits / p.T, dim=-1)
    # xlogy(0, 0) = 0: classes with zero target mass add nothing (no NaN).
    kl = (torch.special.xlogy(q, q) - q * log_s).sum(dim=-1).mean()
    loss = p.lam_kd * p.T**2 * kl + p.lam_ce * F.cross_entropy(student_logits, labels)
    return check_finite(loss, "KD loss")


def temper(probs: torch.Tensor, T: float) -> torch.Tensor:
    """``softmax(log probs / T)`` row-wise: ``probs ** (1/T)`` renormalised.

    Zero probabilities stay exactly zero (``log 0 = -inf`` inside the softmax),
    so no epsilon is needed; each row must have some positive mass.
    """
    return torch.softmax(torch.log(probs) / T, dim=-1)


def focal_terms(
    log_probs: torch.Tensor, labels: torch.Tensor, gamma: float, alpha: float | Sequence[float]
) -> torch.Tensor:
    """Per-example ``-alpha_y (1 - p_y)^gamma log p_y``, shape (n,); shared with DUS.

    ``1 - p_y`` is computed as ``-expm1(log p_y)`` (exact near p_y = 1) and
    clamped at 0 so rounding can never raise a negative base to a real power.
    """
    log_py = log_probs.gather(1, labels[:, None]).squeeze(1)
    one_minus_py = (-torch.expm1(log_py)).clamp_min(0.0)
    return -class_weight(alpha, labels, log_probs) * one_minus_py.pow(gamma) * log_py


def class_weight(alpha: float | Sequence[float], labels: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor | float:
    """``alpha_y`` for each example: the scalar itself, or ``alpha[y]`` for per-class weights."""
    if isinstance(alpha, (int, float)):
        return float(alpha)
    weights = torch.as_tensor(alpha, dtype=log_probs.dtype, device=log_probs.device)
    if weights.shape != (log_probs.shape[1],):
        raise ValueError(f"per-class alpha needs {log_probs.shape[1]} weights, got shape {tuple(weights.shape)}")
    return weights[labels]


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Per-row entropy ``-sum_k p_k log p_k`` in nats from log-probabilities, shape (n,)."""
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def normalize_alpha(alpha: Any) -> float | tuple[float, ...]:
    """A positive scalar, or per-class weights (any sequence or tensor) as a tuple of positive floats."""
    if isinstance(alpha, (int, float)):
        value: float | tuple[float, ...] = float(alpha)
    else:
        value = tuple(torch.as_tensor(alpha, dtype=torch.float64).reshape(-1).tolist())
    weights = value if isinstance(value, tuple) else (value,)
    if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"alpha must be a positive number or positive per-class weights, got {alpha!r}")
    return value


def check_finite(loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
    """Return ``loss`` unchanged, or raise :class:`NonFiniteLossError` if it is NaN or infinite."""
    if not bool(torch.isfinite(loss).all()):
        raise NonFiniteLossError(
            f"{what} is {loss.detach().cpu().tolist()}: training diverged or the inputs are not finite "
            "(try a lower learning rate and check the logits)"
        )
    return loss


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ValueError unless logits are (n, C) floats and labels are n integers in [0, C)."""
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor of shape (n, C), got {logits.dtype} {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1] or labels.dtype != torch.long:
        raise ValueError(
            f"labels must be an int64 tensor of shape ({logits.shape[0]},), got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got [{int(labels.min())}, {int(labels.max())}]")


def check_distribution(probs: torch.Tensor, shape: torch.Size) -> None:
    """Raise ValueError unless ``probs`` has ``shape`` and non-negative rows that sum to 1."""
    if probs.shape != shape:
        raise ValueError(f"target distribution must have shape {tuple(shape)}, got {tuple(probs.shape)}")
    if bool((probs < 0).any()) or not torch.allclose(
        probs.sum(dim=-1), torch.ones((), dtype=probs.dtype, device=probs.device), rtol=0.0, atol=ROW_SUM_ATOL
    ):
        raise ValueError("target distribution rows must be non-negative and sum to 1")


def resolve_params(cls: type[P], params: P | None, hparams: dict[str, Any]) -> P:
    """The spec a loss runs with: ``params`` (default ``cls()``) with ``hparams`` overriding its fields."""
    if params is None:
        return cls(**hparams)
    if not isinstance(params, cls):
        raise TypeError(f"expected {cls.__name__} or keyword arguments, got {type(params).__name__}")
    return dataclasses.replace(params, **hparams) if hparams else params
