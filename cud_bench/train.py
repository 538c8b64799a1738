"""One training loop for teachers and students, whatever the architecture.

Why one loop: a teacher and its students differ only in the loss (cross-entropy
on labels, or a distillation loss on target distributions) and in the
architecture, so every recipe is trained, stopped and checkpointed the same way
and no method gains from a loop of its own.

The checkpoint rule is early stopping on validation loss (:data:`SELECTION_RULE`):
after every epoch the model's cross-entropy against the validation *labels* is
measured at the temperature that minimises it (the "calibrated log-likelihood" of
Ashukha et al. 2020); training stops once ``patience`` epochs in a row have not
lowered it (or at ``epochs``, the maximum), and the state with the lowest value
(ties go to the earliest epoch) is restored. It is one rule for every teacher and
student recipe, so no method gains from a stopping rule of its own: a KD student's
validation loss is also cross-entropy against labels, not its distillation loss
(which differs between recipes and has no common scale).
Why at the best temperature: raw validation NLL mixes how well a model separates
the classes with its overall confidence level, which some recipes set on purpose.
Measured on the smoke suite, a DUS teacher (entropy bonus, no CE term) kept its raw
validation NLL flat at 0.665-0.673 for four epochs while its accuracy rose from 0.59
to 0.73, so raw NLL with patience 3 kept epoch 1, a near one-class teacher. One
scalar temperature cannot change the ranking, so the criterion judges what the
recipe learnt, not its confidence scale (which post-hoc TS reports separately).
Why loss and not accuracy: a fixed epoch count with the best-accuracy epoch left a
third of hashed-bag students at their last epoch (under-trained) and kept others
at epoch 1 predicting the majority class, where accuracy ties or barely moves while
the loss still says which state fits the labels better. The rule's name and
patience are in every :class:`TrainConfig` (hence every spec hash) and every
:class:`TrainResult`.

Every random draw flows from ``seed``: the batch order from a ``torch.Generator``
seeded with it, dropout from torch's global generator seeded with it inside a
``fork_rng`` block (the caller's generator state is left untouched). On a CPU
the same seed, model and inputs give bit-identical weights, logits and history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from tqdm.auto import tqdm
from transformers.optimization import get_scheduler
from transformers.trainer_utils import SchedulerType

from cud_bench import calibration, metrics
from cud_bench.errors import CudBenchError
from cud_bench.losses import NonFiniteLossError
from cud_bench.specs import Spec

if TYPE_CHECKING:
    from cud_bench.models.architectures import Architecture, ModelInputs

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

SELECTION_RULE = "min-val-calibrated-nll"  # early stopping on validation NLL at its best temperature
PATIENCE = 3  # epochs without a lower validation loss before training stops


@dataclasses.dataclass(frozen=True)
class TrainConfig(Spec):
    """How a network is trained: optimisation hyperparameters and the checkpoint rule.

    ``schedule`` is a ``transformers`` scheduler name (``"constant"``, ``"cosine"``,
    ``"linear"``, ...); the first ``warmup_ratio`` of all steps warm the learning
    rate up linearly from 0 where the schedule supports it (``"constant"`` does
    not). ``grad_clip`` is the maximum global L2 norm of the gradients (None: no
    clipping; sparse gradients cannot be clipped). ``epochs`` is the maximum;
    training stops earlier after ``patience`` epochs without a lower validation
    loss (the schedule is still laid out over ``epochs``). ``selection`` is fixed
    to :data:`SELECTION_RULE`; it is a field so that it enters every hash and record.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float | None = None
    warmup_ratio: float = 0.0
    schedule: str = "constant"
    patience: int = PATIENCE
    selection: str = SELECTION_RULE
    eval_batch_size: int = dataclasses.field(default=1024, metadata={"hash": False})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.patience < 1:
            raise ValueError(f"epochs, patience and batch sizes must be >= 1, got {self}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"need lr > 0, weight_decay >= 0 and 0 <= warmup_ratio < 1, got {self}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        SchedulerType(self.schedule)  # ValueError listing the known names
        if self.selection != SELECTION_RULE:
            raise ValueError(f"the only checkpoint rule is {SELECTION_RULE!r}, got {self.selection!r}")

    @property
    def selection_rule(self) -> str:
        """The rule as records name it, with its patience: ``min-val-calibrated-nll/patience=3``."""
        return f"{self.selection}/patience={self.patience}"


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss over its examples; validation loss (cross-entropy
    against labels at the best temperature, the stopping criterion) and accuracy after it."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run reports; the model itself is updated in place.

    ``best_epoch`` is the (1-based) epoch whose state the model holds on return (lowest
    validation loss); ``epochs_run`` the epochs trained before stopping (at most the
    configured maximum). ``wall_s`` covers training and the per-epoch validation passes;
    ``train_examples_per_s`` is training examples seen (epochs run x n) over ``wall_s``.
    """

    best_epoch: int
    epochs_run: int
    selection_rule: str
    history: tuple[EpochStats, ...]
    wall_s: float
    train_examples_per_s: float

    @property
    def best_val_accuracy(self) -> float:
        return self.history[self.best_epoch - 1].val_accuracy

    @property
    def best_val_loss(self) -> float:
        return self.history[self.best_epoch - 1].val_loss

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train(
    arch: Architecture,
    model: torch.nn.Module,
    train_inputs: ModelInputs,
    train_labels: np.ndarray,
    loss_fn: LossFn,
    val_inputs: ModelInputs,
    val_labels: np.ndarray,
    *,
    seed: int,
    targets: np.ndarray | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` (on whatever device it is on) with ``arch.spec.train``; stop early and
    restore its lowest-validation-loss epoch (see the module docstring).

    ``loss_fn(logits, labels, targets)`` gets the batch's (b, C) logits, its int64
    labels and, when ``targets`` (n, C) is given, the batch's rows of it as float32
    (else None); it returns a scalar. A non-finite loss raises
    :class:`~cud_bench.losses.NonFiniteLossError` naming the epoch and step (both 1-based).
    """
    cfg = arch.spec.train
    n = len(train_inputs)
    labels = _labels(train_labels, n, "training")
    val_y = _labels(val_labels, len(val_inputs), "validation").numpy()
    soft = None if targets is None else _targets(targets, n)
    device = next(model.parameters()).device
    total_steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    warmup_steps = round(cfg.warmup_ratio * total_steps)

    history: list[EpochStats] = []
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, best_loss = 0, math.inf
    start = time.perf_counter()
    with seeded(seed, device):
        optimizers = arch.optimizers(model)
        schedulers = [
            get_scheduler(cfg.schedule, opt, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
            for opt in optimizers
        ]
        order = torch.Generator().manual_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        epochs = tqdm(range(1, cfg.epochs + 1), desc=f"train {arch.spec.name}", disable=not progress, leave=False)
        for epoch in epochs:
            model.train()
            loss_sum = 0.0
            for step, idx in enumerate(torch.randperm(n, generator=order).split(cfg.batch_size), start=1):
                batch = (x.to(device) for x in train_inputs.select(idx))
                t = None if soft is None else soft[idx].to(device)
                loss, value = _loss(loss_fn, model(*batch), labels[idx].to(device), t, f"epoch {epoch}, step {step}")
                loss_sum += value * len(idx)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                for opt, sched in zip(optimizers, schedulers):
                    opt.step()
                    sched.step()
            val_logits = predict_logits(arch, model, val_inputs)
            val_loss = validation_loss(val_logits, val_y)
            history.append(EpochStats(epoch, loss_sum / n, val_loss, metrics.accuracy(softmax(val_logits, axis=1), val_y)))
            epochs.set_postfix(val_loss=f"{val_loss:.4f}")
            if val_loss < best_loss or not best_state:  # strictly lower: ties keep the earliest epoch
                best_epoch, best_loss = epoch, val_loss
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch - best_epoch >= cfg.patience:
                break
        model.load_state_dict(best_state)
    wall = time.perf_counter() - start
    return TrainResult(
        best_epoch=best_epoch,
        epochs_run=len(history),
        selection_rule=cfg.selection_rule,
        history=tuple(history),
        wall_s=wall,
        train_examples_per_s=len(history) * n / wall,
    )


def validation_loss(logits: np.ndarray, labels: np.ndarray, T: float | None = None) -> float:
    """Mean cross-entropy (nats) of ``logits / T`` (n, C) against integer ``labels`` in float64,
    at the ``T`` that minimises it on these (validation) data (or the given one, fitted by the
    caller); infinite for non-finite logits."""
    z = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(z).all():
        return math.inf
    if T is None:
        T = calibration.fit_temperature(z, labels, split="validation")
    log_p = log_softmax(z / T, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def predict_logits(
    arch: Architecture, model: torch.nn.Module, inputs: ModelInputs, batch_size: int | None = None
) -> np.ndarray:
    """Logits (n, C) float32 of ``model`` in eval mode, in input order; batches of ``arch``'s eval size by default."""
    if len(inputs) == 0:
        raise ValueError("predict_logits needs at least one input")
    size = batch_size or arch.spec.train.eval_batch_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out = [
            model(*(t.to(device) for t in inputs.select(idx))).float().cpu()
            for idx in torch.arange(len(inputs)).split(size)
        ]
    model.train(was_training)
    return torch.cat(out).numpy()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device = torch.device("cpu")) -> Iterator[None]:
    """Seed torch's global generators for the block (restored after it), deterministic kernels on.

    ``use_deterministic_algorithms`` only warns where an op has no deterministic
    kernel (some CUDA ops): bit-identity is promised on CPU, not on GPUs.
    """
    cuda = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _loss(
    loss_fn: LossFn, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, where: str
) -> tuple[torch.Tensor, float]:
    """The batch loss and its value, or :class:`NonFiniteLossError` saying where training diverged."""
    try:
        loss = loss_fn(logits, y, t)
    except NonFiniteLossError as err:
        raise NonFiniteLossError(f"{where}: {err}") from err
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"{where}: the training loss is {value}; training diverged or the inputs are not finite "
            "(try a lower learning rate)"
        )
    return loss, value


def _labels(labels: np.ndarray, n: int, split: str) -> torch.Tensor:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise CudBenchError(f"{split} labels must be {n} integers (one per input), got {y.dtype} {y.shape}")
    if n == 0:
        raise CudBenchError(f"the {split} split is empty")
    return torch.from_numpy(y.astype(np.int64))


def _targets(targets: np.ndarray, n: int) -> torch.Tensor:
    t = np.asarray(targets, dtype=np.float32)
    if t.ndim != 2 or t.shape[0] != n:
        raise CudBenchError(f"targets must have shape ({n}, C), got {t.shape}")
    return torch.from_numpy(t)
