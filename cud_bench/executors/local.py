"""The local executor: this machine only, nothing to start first (the default)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from cud_bench import numerics, stages
from cud_bench.errors import CudBenchError
from cud_bench.executors.base import Executor, Plan, record_stamps, register_executor, written_since

if TYPE_CHECKING:
    from cud_bench.records import CellKey
    from cud_bench.runner import Counts


@register_executor("local")
class LocalExecutor(Executor):
    """The cells in this process, or whole tasks in ``jobs`` spawned worker processes.

    ``jobs`` > 1 runs that many worker processes, one task at a time each, sharing
    the CPU cores between them: the small heads train one step at a time and
    cannot use two cores, so two processes of one thread do twice the work. Each
    cell runs in one process; with another thread count, float sums may round
    differently, so compare runs made with the same ``jobs`` bit for bit. A
    portable run always uses spawned workers, started with the mode's environment
    (one thread each, even for ``jobs`` 1), so their kernels are chosen before
    torch is imported.
    """

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise CudBenchError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def run(self, plan: Plan) -> list[Counts]:
        from cud_bench.runner import run_cells

        cells = list(plan.cells)
        by_task = {task: [c for c in cells if c.task == task] for task in dict.fromkeys(c.task for c in cells)}
        if plan.mode.name == "native" and (self.jobs == 1 or len(by_task) < 2):
            return [run_cells(plan.suite, cells, plan.out_dir, plan.teacher_cache, plan.progress, plan.group_size)]
        if not cells:
            return []
        with numerics.environment(plan.mode):  # spawned workers start with the mode's variables
            return _run_in_workers(plan, by_task, self.jobs)


def _run_in_workers(plan: Plan, by_task: dict[str, list[CellKey]], jobs: int) -> list[Counts]:
    """Each task's cells in one of ``jobs`` worker processes; the progress bar counts finished records
    and shows what each worker is doing (:mod:`cud_bench.stages`)."""
    from cud_bench.runner import run_cells

    suite, out_dir, mode = plan.suite, plan.out_dir, plan.mode

    threads = mode.threads or max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no forked torch or tokenizer threads
    todo = [c for cells in by_task.values() for c in cells]
    before, stages_before = record_stamps(out_dir, todo), stages.stamps(out_dir, suite.name)
    with concurrent.futures.ProcessPoolExecutor(
        min(jobs, len(by_task)), mp_context=context, initializer=_use_threads, initargs=(threads, mode)
    ) as pool:
        pending = {
            pool.submit(run_cells, suite, cells, out_dir, plan.teacher_cache, False, plan.group_size) for cells in by_task.values()
        }
        finished: list[concurrent.futures.Future] = []
        with tqdm(total=len(todo), desc=f"suite {suite.name} ({jobs} jobs)", unit="cell", disable=not plan.progress) as bar:
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=5, return_when=concurrent.futures.FIRST_EXCEPTION)
                finished += done
                failed = [f.exception() for f in done if f.exception() is not None]
                if failed:
                    pool.shutdown(wait=False, cancel_futures=True)  # workers finish the task they are on
                    raise failed[0]
                bar.set_postfix_str(stages.current(out_dir, suite.name, stages_before), refresh=False)
                bar.update(written_since(out_dir, before) - bar.n)
    return [future.result() for future in finished]


def _use_threads(threads: int, mode: numerics.NumericsMode) -> None:
    import torch

    numerics.check_applied(mode)
    torch.set_num_threads(threads)
