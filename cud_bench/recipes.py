"""The three parts every method is composed of, each a registry of components.

A method is ``teacher recipe × target transform × student recipe``. Methods
that share a teacher recipe (and seed, fold, task) share one trained teacher,
and two methods differ in exactly the parts whose names differ — which is what
makes the comparison fair and cheap.

A component is a factory registered by name; its keyword arguments and their
defaults *are* its hyperparameters. :func:`component` pins them into a frozen
:class:`Component` spec, so every stored number says which settings produced it.

- teacher recipe -> ``loss_fn(logits, labels, targets) -> scalar``
- target transform -> ``transform(teacher: TeacherOutputs) -> TargetResult``
- student recipe -> ``loss_fn(logits, labels, targets) -> scalar``
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import numpy as np
import torch

from cud_bench import calibration, cud, losses
from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry
from cud_bench.specs import Spec

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

teacher_recipes: Registry[Callable[..., LossFn]] = Registry("teacher recipe")
target_transforms: Registry[Callable[..., Callable[["TeacherOutputs"], "TargetResult"]]] = Registry("target transform")
student_recipes: Registry[Callable[..., LossFn]] = Registry("student recipe")

REGISTRIES = {"teacher": teacher_recipes, "transform": target_transforms, "student": student_recipes}


@dataclasses.dataclass(frozen=True)
class Component(Spec):
    """A registered component with every hyperparameter pinned (defaults filled in)."""

    kind: str  # "teacher" | "transform" | "student"
    name: str
    params: dict[str, Any]

    def build(self) -> Any:
        return REGISTRIES[self.kind].get(self.name)(**self.params)

    @property
    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})" if args else self.name


def component(kind: str, name: str, **overrides: Any) -> Component:
    """Pin a component: its factory's defaults, updated by ``overrides`` (unknown names refused)."""
    factory = REGISTRIES[kind].get(name)
    params = {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise CudBenchError(f"{kind} {name!r} has no hyperparameter {', '.join(unknown)} (it has: {', '.join(params)})")
    params.update(overrides)
    return Component(kind=kind, name=name, params=params)


@dataclasses.dataclass(frozen=True)
class TeacherOutputs:
    """What a target transform may use: the teacher's logits on the student's training
    examples (in-sample or cross-fitted), their gold labels, and validation logits/labels.

    ``folds`` (cross-fit only): for each fold teacher, the training rows it labelled and
    its own validation logits, so a transform fitted on validation data (temperature
    scaling) fits each fold teacher on its own outputs, not the full-data teacher's.
    """

    train_logits: np.ndarray
    train_labels: np.ndarray
    val_logits: np.ndarray
    val_labels: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (rows labelled, that teacher's validation logits)


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """Target distributions (n, C) for the student, plus what the records report about them."""

    probs: np.ndarray
    rows_changed: float = 0.0  # share of rows the transform changed (W-Clip)
    temperature: float | None = None  # the fitted temperature (temperature-scaled targets; cross-fit: fold mean)
    fold_temperatures: tuple[float, ...] = ()  # cross-fit: each fold teacher's own temperature, fold order


# -- teacher recipes --------------------------------------------------------------------
@teacher_recipes.register("ce")
def ce_teacher() -> LossFn:
    return lambda logits, labels, targets: losses.cross_entropy(logits, labels)


_LS, _FOCAL, _DUS = losses.LabelSmoothingParams(), losses.FocalParams(), cud.DUSParams()
_WCLIP, _KD = cud.WClipParams(), losses.KDParams()


@teacher_recipes.register("label-smoothing")
def label_smoothing_teacher(eps: float = _LS.eps) -> LossFn:
    losses.LabelSmoothingParams(eps)  # range checks now, not after the teachers have trained
    return lambda logits, labels, targets: losses.label_smoothing_loss(logits, labels, eps=eps)


@teacher_recipes.register("focal")
def focal_teacher(gamma: float = _FOCAL.gamma, alpha: float = _FOCAL.alpha) -> LossFn:
    losses.FocalParams(gamma, alpha)
    return lambda logits, labels, targets: losses.focal_loss(logits, labels, gamma=gamma, alpha=alpha)


@teacher_recipes.register("dus")
def dus_teacher(
    lam_ce: float = _DUS.lam_ce,
    lam_f: float = _DUS.lam_f,
    alpha: float = _DUS.alpha,
    gamma: float = _DUS.gamma,
    lam_h: float = _DUS.lam_h,
    tau_gate: float = _DUS.tau_gate,
    rho: float = _DUS.rho,
    beta: float = _DUS.beta,
) -> LossFn:
    params = cud.DUSParams(lam_ce, lam_f, alpha, gamma, lam_h, tau_gate, rho, beta)
    return lambda logits, labels, targets: cud.dus_loss(logits, labels, params)


# -- target transforms ------------------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    return calibration.apply_temperature(logits, 1.0)


@target_transforms.register("identity")
def identity_transform() -> Callable[[TeacherOutputs], TargetResult]:
    return lambda t: TargetResult(_softmax(t.train_logits))


@target_transforms.register("temperature-scaled")
def temperature_scaled_transform() -> Callable[[TeacherOutputs], TargetResult]:
    """Soften the targets with the temperature that minimises the teacher's validation NLL.

    Cross-fitted targets come from several fold teachers: each fold's rows get the
    temperature fitted on *that* teacher's validation logits (a fold teacher, trained on
    less data, is calibrated differently from the full-data one). The KD student's own
    ``T`` (2 by default) then tempers these targets once more; that is the ``ts`` recipe.
    """

    def transform(t: TeacherOutputs) -> TargetResult:
        if not t.folds:
            T = calibration.fit_temperature(t.val_logits, t.val_labels, split="validation")
            return TargetResult(calibration.apply_temperature(t.train_logits, T), temperature=T)
        probs = np.empty(t.train_logits.shape, dtype=np.float64)
        temperatures = []
        for rows, val_logits in t.folds:
            T = calibration.fit_temperature(val_logits, t.val_labels, split="validation")
            probs[rows] = calibration.apply_temperature(t.train_logits[rows], T)
            temperatures.append(T)
        covered = np.sort(np.concatenate([rows for rows, _ in t.folds]))
        if not np.array_equal(covered, np.arange(len(t.train_logits))):
            raise CudBenchError("cross-fit folds must label every training row exactly once")
        return TargetResult(probs, temperature=float(np.mean(temperatures)), fold_temperatures=tuple(temperatures))

    return transform


@target_transforms.register("wclip")
def wclip_transform(eta: float = _WCLIP.eta, m: float = _WCLIP.m) -> Callable[[TeacherOutputs], TargetResult]:
    cud.WClipParams(eta, m)
    def transform(t: TeacherOutputs) -> TargetResult:
        probs, changed = cud.wclip(_softmax(t.train_logits), t.train_labels, eta=eta, m=m, return_changed=True)
        return TargetResult(probs, rows_changed=float(changed.mean()))

    return transform


# -- student recipes --------------------------------------------------------------------
@student_recipes.register("kd")
def kd_student(T: float = _KD.T, lam_kd: float = _KD.lam_kd, lam_ce: float = _KD.lam_ce) -> LossFn:
    losses.KDParams(T, lam_kd, lam_ce)
    return lambda logits, labels, targets: losses.kd_loss(logits, targets, labels, T=T, lam_kd=lam_kd, lam_ce=lam_ce)


@student_recipes.register("ce")
def ce_student() -> LossFn:
    return lambda logits, labels, targets: losses.cross_entropy(logits, labels)
