"""Dropout whose masks are the same on every x86-64 CPU.

Why not ``nn.Dropout``: torch's CPU dropout draws its mask with ``bernoulli_(1 - p)``,
a scalar probability, and with MKL that kernel checks the CPU vendor (cpuinfo, in
ATen's ``DistributionKernels.cpp``): on an Intel CPU it draws from an MKL stream
seeded by one number of the generator, elsewhere from torch's mt19937 one number
per element. The same seed then trains other models on an Intel CPU, and no
environment variable pins the choice, so the portable numerics mode could not. With
a tensor probability ``bernoulli_`` has one path on every CPU, torch's mt19937: a
float64 uniform (53 bits of two 32-bit draws) per element, kept if below the
probability. In float64 that is exactly what the scalar path draws on a non-Intel
CPU, so the numbers of runs made on AMD CPUs (every run so far) do not change.
"""

from __future__ import annotations

import torch
from torch import nn


def keep_mask(like: torch.Tensor, keep: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A tensor shaped like ``like``: 1 where a unit is kept (probability ``keep``), else 0.

    One mt19937 float64 uniform per element, in memory order, from ``generator``
    (None: torch's global generator, as ``nn.Dropout`` uses)."""
    keep_t = torch.tensor(keep, dtype=torch.float64, device=like.device)
    return torch.empty_like(like, memory_format=torch.contiguous_format).bernoulli_(keep_t, generator=generator)


class Dropout(nn.Module):
    """``nn.Dropout`` (same masks on AMD CPUs, same scaling and gradient) with :func:`keep_mask`'s masks."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * keep_mask(x, 1 - self.p).div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
