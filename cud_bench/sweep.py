"""Sensitivity sweeps: a method's hyperparameters over a grid, as method variants in one suite.

Each grid point is a method variant (``cud+gamma=5+eta=0.3``, see
:func:`cud_bench.methods.get_method`), so a sweep is an ordinary run: its cells
resume, share cached teachers (a variant that changes only the W-Clip or the
student reuses the DUS teacher) and become entries and claims like any other.
A claim with ``robust: SHARE`` and side A ``cud+*`` then asks whether a result
holds for at least that share of the settings.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

from cud_bench.errors import CudBenchError
from cud_bench.executors import Executor
from cud_bench.methods import get_method, variant_name
from cud_bench.runner import RunSummary, run_suite
from cud_bench.suites import SuiteSpec


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["gamma=2,5,10", "eta=0.3,0.5"]`` -> ``{"gamma": ["2", "5", "10"], "eta": ["0.3", "0.5"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        choices = [v for v in values.split(",") if v]
        if not sep or not name or not choices or name in grid:
            raise CudBenchError(f"grid entry {item!r}: expected PARAM=V1,V2,... with each PARAM once")
        grid[name] = choices
    if not grid:
        raise CudBenchError("a sweep needs at least one --grid PARAM=V1,V2,...")
    return grid


def sweep_methods(method: str, grid: dict[str, list[str]]) -> list[str]:
    """The variant names of every grid point, checked (an unknown or ambiguous parameter fails here)."""
    names = [variant_name(method, dict(zip(grid, point))) for point in itertools.product(*grid.values())]
    for name in names:
        get_method(name)
    return names


def run_sweep(
    suite: SuiteSpec,
    method: str,
    grid: dict[str, list[str]],
    out_dir: Path,
    *,
    also: Sequence[str] = ("kd",),
    jobs: int = 1,
    executor: Executor | None = None,
    numerics_mode: str = "native",
) -> tuple[list[str], RunSummary]:
    """Run ``suite`` on every grid point of ``method`` plus the methods ``also`` (the comparisons)."""
    variants = sweep_methods(method, grid)
    restricted = suite.restrict(methods=[*also, *variants])
    return variants, run_suite(restricted, out_dir, jobs=jobs, executor=executor, numerics_mode=numerics_mode)
