"""Many small models of one architecture trained at once, each exactly as :func:`cud_bench.train.train` would.

Why: a suite trains hundreds of students of the same few heads on the same inputs
(every method x seed x protocol of a task), and one step of one small head cannot
keep a core busy: per-step overheads (Python, dispatch, the optimiser call) cost as
much as the arithmetic. Stacking the models along a leading dimension turns M small
steps into one step of batched matrix products (``baddbmm``/``bmm``) and one fused
AdamW call.

What each model gets is what it gets alone, bit for bit on a CPU (tested on real
cached features): its own initialisation (built by the caller with its seed), its
own batch order (a ``torch.Generator`` seeded with its seed, the same permutation
as alone), its own dropout masks (its own generator seeded with its seed, drawn in
the same order and shapes as the global generator alone), its own loss and targets
(its loss function is called on its slice of the logits, so the backward pass sees
the same values), AdamW applied per model tensor (the fused kernel runs on each
model's views, so its vector/scalar split is the one of the model alone), the same
learning-rate schedule, and its own early stopping: a model that stops leaves the
stack (its best epoch is restored at the end), the others go on. After each epoch
the members' temperature fits (the stopping criterion) run in lockstep
(:func:`~cud_bench.calibration.fit_temperatures`, equal to one fit per model).
The equalities this rests on (``baddbmm`` slice = ``linear``, ``bmm`` of the
transposed gradient = the ``mm`` of ``linear``'s backward) hold for torch's CPU
kernels and are checked by the equality test, not assumed.

Only heads with a registered :class:`Stacker` train stacked (the MLP head today);
:func:`train_many` trains any other architecture one model at a time with
:func:`~cud_bench.train.train`, so a caller need not know which heads stack. The
hashed bag (a sparse table with a lazy row Adam) and the fine-tuned encoders are
not stacked.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from scipy.special import softmax
from torch import nn
from transformers.optimization import get_scheduler

from cud_bench import calibration, metrics
from cud_bench.errors import CudBenchError
from cud_bench.models.dropout import keep_mask
from cud_bench.train import EpochStats, LossFn, TrainResult, _labels, _loss, _targets, train, validation_loss

if TYPE_CHECKING:
    from cud_bench.models.architectures import Architecture, FeatureInputs, ModelInputs


@dataclasses.dataclass(frozen=True)
class Stacker:
    """How one head type is stacked: its parameters as (M, ...) tensors, a forward pass over
    them, and the state dict of one model's slice. ``names`` are the head's state-dict keys in
    the order of :meth:`torch.nn.Module.parameters` (the order its optimiser sees them)."""

    names: tuple[str, ...]
    forward: Callable[[list[torch.Tensor], torch.Tensor, "list[torch.Generator] | None", float], torch.Tensor]
    dropout: Callable[[nn.Module], float]


class _StackedLinear(torch.autograd.Function):
    """``x @ w^T + b`` per model: x (M, b, i), w (M, o, i), b (M, o) -> (M, b, o).

    Its backward does the products ``linear``'s backward does alone, stacked: ``grad^T @ x``
    for the weight (autograd's own baddbmm backward computes ``x^T @ grad`` instead, whose
    sums round differently for some shapes, e.g. 4 classes), ``grad @ w`` for the input and
    the sum over the batch for the bias."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _mlp_forward(
    params: list[torch.Tensor], x: torch.Tensor, generators: list[torch.Generator] | None, p: float
) -> torch.Tensor:
    """Stacked :class:`MLPHead`: x (M, b, d) -> logits (M, b, C); dropout per model from its generator.

    Dropout is :class:`~cud_bench.models.dropout.Dropout` spelled out (``keep_mask``, ``/ (1 - p)``,
    ``h * noise``) with each model's own generator, so its masks are the ones it draws alone."""
    w1, b1, w2, b2 = params
    h = torch.relu(_StackedLinear.apply(x, w1, b1))
    if generators is not None and p > 0:
        noise = torch.stack([keep_mask(h[0], 1 - p, g) for g in generators])
        h = h * noise.div_(1 - p)
    return _StackedLinear.apply(h, w2, b2)


# Architecture name -> how its network stacks (the architecture's create() must build that head).
STACKERS: dict[str, Stacker] = {
    "mlp": Stacker(
        names=("net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"),
        forward=_mlp_forward,
        dropout=lambda model: model.net[2].p,
    ),
}


def stackable(arch: Architecture) -> bool:
    """Whether ``arch``'s models train stacked: a registered stacker and no gradient clipping
    (a per-model norm the stacked step does not compute)."""
    return arch.name in STACKERS and arch.spec.train.grad_clip is None


def _check_optimizer(arch: Architecture, model: nn.Module) -> dict:
    """The one fused AdamW param group ``arch`` trains ``model`` with: the only optimiser the stacked step reproduces."""
    optimizers = arch.optimizers(model)
    groups = optimizers[0].param_groups if len(optimizers) == 1 and type(optimizers[0]) is torch.optim.AdamW else []
    if len(groups) != 1 or not groups[0]["fused"] or groups[0]["amsgrad"] or groups[0]["maximize"]:
        raise CudBenchError(f"architecture {arch.name!r} is registered as stackable but does not train with one fused AdamW")
    return groups[0]


def train_many(
    arch: Architecture,
    models: Sequence[nn.Module],
    train_inputs: ModelInputs,
    train_labels: np.ndarray,
    loss_fns: Sequence[LossFn],
    val_inputs: ModelInputs,
    val_labels: np.ndarray,
    *,
    seeds: Sequence[int],
    targets: Sequence[np.ndarray | None],
    group_size: int | None = None,
) -> list[TrainResult]:
    """Train ``models`` (same architecture, same inputs and labels; each its own loss, seed and
    targets) and return each one's :class:`TrainResult`; each model ends holding its best epoch.

    Stackable models (:func:`stackable`) train in stacks of at most ``group_size`` (None: all
    at once; 1: one at a time with :func:`~cud_bench.train.train`, the reference); others one
    at a time. A stacked model's ``wall_s`` is its stack's wall time divided by the stack size.
    """
    if not (len(models) == len(loss_fns) == len(seeds) == len(targets)):
        raise ValueError("train_many needs one loss function, seed and target array per model")
    if group_size is not None and group_size < 1:
        raise CudBenchError(f"the training group size must be at least 1, got {group_size}")
    results: list[TrainResult | None] = [None] * len(models)
    on_cpu = all(next(m.parameters()).device.type == "cpu" for m in models)
    stacked = list(range(len(models))) if (group_size or 2) > 1 and stackable(arch) and on_cpu else []
    size = group_size or max(1, len(stacked))
    for start in range(0, len(stacked), size):
        chunk = stacked[start : start + size]
        out = _train_stacked(
            arch, [models[i] for i in chunk], train_inputs, train_labels, [loss_fns[i] for i in chunk],
            val_inputs, val_labels, [seeds[i] for i in chunk], [targets[i] for i in chunk],
        )
        for i, result in zip(chunk, out):
            results[i] = result
    for i, model in enumerate(models):
        if results[i] is None:
            results[i] = train(
                arch, model, train_inputs, train_labels, loss_fns[i], val_inputs, val_labels, seed=seeds[i], targets=targets[i]
            )
    return results  # type: ignore[return-value]


@dataclasses.dataclass
class _Member:
    """One model's own state in a stack: generators, targets, history and best epoch."""

    model: nn.Module
    loss_fn: LossFn
    order: torch.Generator  # batch order, seeded with the model's seed (as in train())
    noise: torch.Generator  # dropout, seeded with the model's seed (train()'s global generator)
    targets: torch.Tensor | None
    history: list[EpochStats] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def _train_stacked(
    arch: Architecture,
    models: list[nn.Module],
    train_inputs: FeatureInputs,
    train_labels: np.ndarray,
    loss_fns: list[LossFn],
    val_inputs: FeatureInputs,
    val_labels: np.ndarray,
    seeds: list[int],
    targets: list[np.ndarray | None],
) -> list[TrainResult]:
    cfg = arch.spec.train
    stacker = STACKERS[arch.name]
    n = len(train_inputs)
    labels = _labels(train_labels, n, "training")
    val_y = _labels(val_labels, len(val_inputs), "validation").numpy()
    features, val_features = train_inputs.features, val_inputs.features
    p = stacker.dropout(models[0])
    members = [
        _Member(m, f, torch.Generator().manual_seed(s), torch.Generator().manual_seed(s), None if t is None else _targets(t, n))
        for m, f, s, t in zip(models, loss_fns, seeds, targets)
    ]
    # AdamW's hyperparameters as the model's own optimiser has them (betas, eps, weight decay).
    group = _check_optimizer(arch, models[0])
    beta1, beta2 = group["betas"]
    total_steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    warmup_steps = round(cfg.warmup_ratio * total_steps)
    # The schedule is a function of the step alone, and every model in the stack takes the same steps.
    clock_param = torch.zeros(1, requires_grad=True)
    clock = torch.optim.SGD([clock_param], lr=cfg.lr)
    schedule = get_scheduler(cfg.schedule, clock, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    states = [dict(m.state_dict()) for m in models]
    params = [torch.stack([s[name] for s in states]).detach().requires_grad_(True) for name in stacker.names]
    exp_avg = [torch.zeros_like(q) for q in params]
    exp_avg_sq = [torch.zeros_like(q) for q in params]
    step = torch.tensor(0.0)  # AdamW's per-parameter step count: one value, as every member steps together
    active = list(range(len(members)))  # members still training, in stack order
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        batches = [torch.randperm(n, generator=members[i].order).split(cfg.batch_size) for i in active]
        loss_sums = [0.0] * len(active)
        for s in range(len(batches[0])):
            idx = [b[s] for b in batches]
            x = features[torch.stack(idx)]
            logits = stacker.forward(params, x, [members[i].noise for i in active], p)
            losses = []
            for k, i in enumerate(active):
                m = members[i]
                t = None if m.targets is None else m.targets[idx[k]]
                loss, value = _loss(m.loss_fn, logits[k], labels[idx[k]], t, f"epoch {epoch}, step {s + 1}")
                loss_sums[k] += value * len(idx[k])
                losses.append(loss)
            for q in params:
                q.grad = None
            torch.stack(losses).sum().backward()
            step += 1
            torch._fused_adamw_(
                [v for q in params for v in q.unbind(0)],
                [v for q in params for v in q.grad.unbind(0)],
                [v for q in exp_avg for v in q.unbind(0)],
                [v for q in exp_avg_sq for v in q.unbind(0)],
                [],
                [step] * (len(params) * len(active)),
                amsgrad=False,
                lr=clock.param_groups[0]["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            clock.step()
            schedule.step()
        val_logits = _predict_stacked(stacker, params, val_features, cfg.eval_batch_size)
        finite = [k for k in range(len(active)) if np.isfinite(val_logits[k]).all()]
        temperatures = dict(zip(finite, calibration.fit_temperatures(val_logits[finite], val_y) if finite else []))
        keep = []
        for k, i in enumerate(active):
            m = members[i]
            val_loss = validation_loss(val_logits[k], val_y, temperatures.get(k))
            accuracy = metrics.accuracy(softmax(val_logits[k], axis=1), val_y)
            m.history.append(EpochStats(epoch, loss_sums[k] / n, val_loss, accuracy))
            if val_loss < m.best_loss or not m.best_state:  # strictly lower: ties keep the earliest epoch
                m.best_epoch, m.best_loss = epoch, val_loss
                m.best_state = {name: q[k].detach().clone() for name, q in zip(stacker.names, params)}
                keep.append(k)
            elif epoch - m.best_epoch < cfg.patience:
                keep.append(k)
        if len(keep) < len(active):  # stopped members leave the stack; the others keep their state
            rows = torch.tensor(keep, dtype=torch.long)
            params = [q.detach()[rows].requires_grad_(True) for q in params]
            exp_avg = [q[rows] for q in exp_avg]
            exp_avg_sq = [q[rows] for q in exp_avg_sq]
            active = [active[k] for k in keep]
        if not active:
            break
    wall = time.perf_counter() - start
    results = []
    for m in members:
        m.model.load_state_dict({**dict(m.model.state_dict()), **m.best_state})
        share = wall / len(members)
        results.append(
            TrainResult(
                best_epoch=m.best_epoch,
                epochs_run=len(m.history),
                selection_rule=cfg.selection_rule,
                history=tuple(m.history),
                wall_s=share,
                train_examples_per_s=len(m.history) * n / share,
            )
        )
    return results


def _predict_stacked(stacker: Stacker, params: list[torch.Tensor], features: torch.Tensor, batch_size: int) -> np.ndarray:
    """Eval-mode logits (M, n, C) float32 of every stacked model, in the batches predict_logits uses."""
    count = params[0].shape[0]
    with torch.inference_mode():
        out = [
            stacker.forward([q.detach() for q in params], features[idx].expand(count, -1, -1).contiguous(), None, 0.0)
            for idx in torch.arange(len(features)).split(batch_size)
        ]
    return torch.cat(out, dim=1).numpy()
