"""Executors: where and when the units of a run (teachers, cells) run.

The runner decides what a run must do (the suite's missing cells, the numerics mode,
the folders: a :class:`Plan`); an executor decides which process or machine runs each
unit and in what order, calling the runner's work functions. ``local`` (the default)
needs nothing running; ``ray`` runs every teacher and cell as a task on a Ray cluster.
A new executor is one module in this package with :func:`register_executor`.
"""

from cud_bench.executors.base import Executor, Plan, create, current, executors, register_executor, use

__all__ = ["Executor", "Plan", "create", "current", "executors", "register_executor", "use"]
