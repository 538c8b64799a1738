"""Numerics modes: which CPU kernels a run may use, and hence where its numbers repeat bit for bit.

Why a mode: the same code, lock and seed give different last bits on another CPU,
because several libraries pick their kernels by what the CPU offers, and those
bits grow through training into different models. Measured on an AMD EPYC (AVX2)
with torch 2.13 / numpy 2.4 (``python benchmarks/probe_numerics.py``), each of these
changes results by itself:

- ATen's dispatch (``ATEN_CPU_CAPABILITY``): softmax, log-softmax, layer norm,
  cross-entropy backward, the AdamW step, and the random draws that initialise
  weights (``normal_``, ``uniform_``);
- MKL's GEMM (every ``nn.Linear``): MKL picks its code by CPU vendor and ISA;
  on AMD it ignores ``MKL_CBWR=AVX2``/``MKL_ENABLE_INSTRUCTIONS`` and honours only
  ``MKL_CBWR=COMPATIBLE``, so no native setting makes an Intel CPU compute like an AMD one;
- oneDNN's element-wise kernels (``F.gelu``, in the MiniLM encoders): ``ONEDNN_MAX_CPU_ISA``;
- numpy's SIMD dispatch (float32 ``exp``, ...): ``NPY_DISABLE_CPU_FEATURES``;
- glibc's libm (float64 ``exp`` in numpy and scipy, and ATen's baseline kernels),
  whose FMA variants are chosen at load time: ``GLIBC_TUNABLES``;
- OpenBLAS in numpy/scipy (``OPENBLAS_CORETYPE``), and the thread count (reductions).

One choice no variable reaches: torch's dropout masks (scalar ``bernoulli_``) come from
MKL's generator on Intel CPUs and torch's mt19937 elsewhere; the heads draw theirs
through :mod:`cud_bench.models.dropout`, which takes the mt19937 path on every CPU.

``native`` lets every library choose (fastest; bit-identical on the same machine
type, library lock and thread count). ``portable`` fixes every choice above to
the baseline x86-64 path, one thread per process, so the choice no longer depends
on the CPU: the variables must be set before torch and numpy are imported, which
is why the runner applies them to the worker processes it spawns. Caches of
features and teachers are kept per mode, so numbers of the two modes never mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator, Mapping

from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry

MODE_VAR = "CUD_BENCH_NUMERICS"  # the mode a process was started in (set with the mode's env)

# Every environment variable that changes which kernel computes a number (recorded in provenance).
KERNEL_VARS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "GLIBC_TUNABLES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    MODE_VAR,
)


@dataclasses.dataclass(frozen=True)
class NumericsMode:
    """A named numerics mode: the environment its processes start with and their thread count.

    ``threads`` None: the runner's share of the cores (``cpus // jobs``).
    ``torch_capability`` is what ``torch.backends.cpu.get_cpu_capability()`` must
    report in a process of this mode (None: whatever the CPU offers).
    """

    name: str
    env: Mapping[str, str]
    threads: int | None
    torch_capability: str | None
    description: str


modes: Registry[NumericsMode] = Registry("numerics mode")
modes.register(
    "native",
    NumericsMode("native", {}, None, None, "every library picks the fastest kernels this CPU offers"),
)
modes.register(
    "portable",
    NumericsMode(
        "portable",
        {
            MODE_VAR: "portable",
            "ATEN_CPU_CAPABILITY": "default",
            "MKL_CBWR": "COMPATIBLE,STRICT",
            "ONEDNN_MAX_CPU_ISA": "SSE41",
            # numpy's dispatch targets above its X86_V2 baseline (numpy 2.4); all of them off
            "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR",
            "OPENBLAS_CORETYPE": "Prescott",
            "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
        1,
        "DEFAULT",
        "baseline x86-64 kernels in every library, one thread: the same bits on any x86-64 CPU (slower)",
    ),
)


def current() -> NumericsMode:
    """The mode this process was started in (``native`` unless the runner started it in another)."""
    return modes.get(os.environ.get(MODE_VAR) or "native")


def cache_name(kind: str) -> str:
    """A cache folder name per mode (``features``, ``features-portable``): modes never share cached numbers."""
    mode = current()
    return kind if mode.name == "native" else f"{kind}-{mode.name}"


def check_applied(mode: NumericsMode) -> None:
    """Fail unless this process really runs with ``mode``'s kernels (its env was set before the imports)."""
    import torch

    wrong = {k: os.environ.get(k) for k, v in mode.env.items() if os.environ.get(k) != v}
    capability = torch.backends.cpu.get_cpu_capability()
    if mode.torch_capability is not None and capability != mode.torch_capability:
        wrong["torch cpu capability"] = capability
    if wrong:
        raise CudBenchError(f"this process was meant to run in {mode.name} numerics mode but has {wrong}")


@contextlib.contextmanager
def environment(mode: NumericsMode) -> Iterator[None]:
    """``mode``'s variables in ``os.environ`` for the block, so processes spawned in it start with them."""
    saved = {k: os.environ.get(k) for k in mode.env}
    os.environ.update(mode.env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def require_same_mode(recorded: str | None, mode: NumericsMode, where: str) -> None:
    """Refuse to add numbers of one mode to results of another (they differ in the last bits)."""
    if recorded is not None and recorded != mode.name:
        raise CudBenchError(
            f"{where} holds results made in {recorded} numerics mode; this run is {mode.name}. "
            "Numbers of the two modes differ, so they are never mixed: use another --out"
            + (" or add --portable" if recorded == "portable" else " or drop --portable")
        )
