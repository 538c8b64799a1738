"""The executor interface, its registry, and the process-wide default executor."""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, TypeVar

from cud_bench.errors import CudBenchError
from cud_bench.registry import Registry

if TYPE_CHECKING:
    from cud_bench.numerics import NumericsMode
    from cud_bench.records import CellKey
    from cud_bench.runner import Counts
    from cud_bench.suites import SuiteSpec


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run must do, fixed by the runner before any work; an executor only decides where and when.

    ``cells``: the suite's missing or stale cells in :func:`cud_bench.runner.expand` order
    (grouped by task). ``teacher_cache`` None: each process's default (``<cache>/teachers``,
    per numerics mode).
    """

    suite: SuiteSpec
    cells: tuple[CellKey, ...]
    out_dir: Path
    teacher_cache: Path | None
    mode: NumericsMode
    progress: bool
    group_size: int | None = None  # students trained as one stack (cud_bench.batched); 1: one at a time


class Executor(abc.ABC):
    """Runs a :class:`Plan`: every cell's record written (atomically) by the runner's work functions."""

    name: ClassVar[str]  # set by register_executor

    @abc.abstractmethod
    def run(self, plan: Plan) -> list[Counts]:
        """Run every cell of ``plan``; one :data:`cud_bench.runner.Counts` per unit of work, summed by the runner."""


def record_stamps(out_dir: Path, cells: list[CellKey]) -> dict[CellKey, float | None]:
    """Each cell's record modification time now (None: no record); see :func:`written_since`."""
    from cud_bench.records import is_done

    return {c: c.record_path(out_dir).stat().st_mtime if is_done(out_dir, c) else None for c in cells}


def written_since(out_dir: Path, before: dict[CellKey, float | None]) -> int:
    """How many cells of ``before`` (:func:`record_stamps` at the start) have a record written since:
    the progress bars count records, so a unit of many cells moves them cell by cell. Compared
    with each record's own earlier time, not a clock, so nodes with skewed clocks count right."""
    return sum(record_stamps(out_dir, [c])[c] not in (None, t) for c, t in before.items())


executors: Registry[type[Executor]] = Registry("executor", discover=("cud_bench.executors",), base=Executor)
E = TypeVar("E", bound=type[Executor])


def register_executor(name: str) -> Callable[[E], E]:
    """Class decorator: register an :class:`Executor` under ``name`` (``--executor NAME``)."""

    def decorator(cls: E) -> E:
        cls.name = name
        executors.register(name, cls)
        return cls

    return decorator


def create(name: str = "local", **options: Any) -> Executor:
    """The executor ``name`` with the options given (None: its default); an option it does not take is refused.

    Why refuse: ``--jobs`` with ``--executor ray`` (or ``--address`` with ``local``)
    would otherwise be ignored silently.
    """
    cls = executors.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = list(inspect.signature(cls).parameters)
    wrong = sorted(set(given) - set(accepted))
    if wrong:
        takes = ", ".join(f"--{a.replace('_', '-')}" for a in accepted) or "no options"
        raise CudBenchError(
            f"the {name} executor does not take {', '.join('--' + w.replace('_', '-') for w in wrong)} (it takes: {takes})"
        )
    return cls(**given)


_default: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("cud_bench_executor", default=None)


def current() -> Executor | None:
    """The executor set by :func:`use` (None: the runner uses the local one)."""
    return _default.get()


@contextlib.contextmanager
def use(executor: Executor) -> Iterator[Executor]:
    """Run every suite started in this block (``cud-bench check --run`` runs one inside the claims code) on ``executor``."""
    token = _default.set(executor)
    try:
        yield executor
    finally:
        _default.reset(token)
