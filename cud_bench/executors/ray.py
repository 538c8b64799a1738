"""The Ray executor: every teacher and every cell of a run as a task on a Ray cluster.

Why Ray: when one machine is not enough, an existing distributed engine schedules,
retries and moves work between machines; this module only maps a run onto it:

- one Ray task per distinct teacher the missing cells need (task, recipe, seed,
  fold, and the ambiguity ensemble's teachers), so each is trained once across the
  cluster (:func:`cud_bench.runner.train_teacher`);
- one Ray task per unit of cells (:func:`units`: a task's cells of one student
  architecture, at most ``--group-size`` of them, trained as one stack by
  :func:`cud_bench.runner.run_cells`), given the ObjectRefs of every teacher its cells
  need as arguments: Ray starts it only once they are trained;
- every task asks for its architecture's resources (:data:`ARCH_RESOURCES`: one CPU,
  and one GPU for the ``finetune`` architecture) and runs one torch thread per CPU.

Every node must see the output folder and the cache (``$CUD_BENCH_CACHE``) at the
same path as the driver: a shared filesystem (NFS, CephFS, ...). Teachers, features
and records are read and written there atomically, as in a local run, so a task
killed mid-way leaves no partial record, its retry (``max_retries``, on any node)
redoes only the cells its killed attempt had not written, and a run resumes whichever
executor started it. A node that cannot
see them fails its task with a message saying so.

Ray must not phone home: :data:`RAY_ENV` (no usage statistics, no metrics
collection) is set before Ray starts, and a Ray instance started here has no
dashboard. Ray is imported only when this executor runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from cud_bench import numerics, stages
from cud_bench.errors import CudBenchError
from cud_bench.executors.base import Executor, Plan, record_stamps, register_executor, written_since
from cud_bench.io import cache_dir

if TYPE_CHECKING:
    from cud_bench.records import CellKey
    from cud_bench.runner import Counts, TeacherNeed
    from cud_bench.suites import SuiteSpec
    from cud_bench.taskdata import Inputs, TaskData

# Set in the driver before Ray starts (a local instance's processes inherit them).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_metrics_collection": "0"}
# How long the driver waits for a cluster's head to accept a connection before refusing the run.
CONNECT_TIMEOUT_S = 5.0
# The driver's variables every task gets (the cache is set to the driver's folder, resolved).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one task asks the cluster for."""

    num_cpus: float = 1
    num_gpus: float = 0


# By architecture name (``model_presets.get(preset)().name``); an architecture not listed asks for Resources().
ARCH_RESOURCES: dict[str, Resources] = {"finetune": Resources(num_cpus=1, num_gpus=1)}


def resources_for(preset: str) -> Resources:
    """The resources of a task that trains the model preset ``preset``."""
    from cud_bench.suites import model_presets

    return ARCH_RESOURCES.get(model_presets.get(preset)().name, Resources())


@dataclasses.dataclass(frozen=True)
class Job:
    """What every task of a run needs to find its work on any node (absolute paths, the numerics mode)."""

    suite: SuiteSpec
    out_dir: Path
    teacher_cache: Path | None
    cache: Path
    mode: str
    group_size: int | None = None  # the plan's: students trained as one stack


@register_executor("ray")
class RayExecutor(Executor):
    """Teachers and cells as Ray tasks: on the cluster at ``address`` (``auto``: the one ``ray start``
    started on this machine; ``HOST:PORT``: its head), or on a Ray instance started here for the
    run (``address`` None); a process already connected to Ray uses that cluster. A task whose worker
    or node dies is retried ``max_retries`` times; an error the task itself raises is not retried."""

    def __init__(self, address: str | None = None, max_retries: int = 3) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise CudBenchError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self.address, self.max_retries = address, max_retries

    def run(self, plan: Plan) -> list[Counts]:
        if not plan.cells:
            return []
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            connect(ray, self.address)
        try:
            return self._run(ray, plan)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, plan: Plan) -> list[Counts]:
        from cud_bench.runner import teachers_needed

        suite = plan.suite
        job = Job(
            suite,
            plan.out_dir.resolve(),
            plan.teacher_cache and plan.teacher_cache.resolve(),
            cache_dir().resolve(),
            plan.mode.name,
            plan.group_size,
        )
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        runtime_env = {"env_vars": {**env, **plan.mode.env, "CUD_BENCH_CACHE": str(job.cache)}}
        teacher_res = resources_for(suite.teacher)
        student_res = {name: resources_for(name) for name in dict.fromkeys(c.student for c in plan.cells)}
        _check_feasible(ray, {f"teacher {suite.teacher}": teacher_res, **{f"student {k}": v for k, v in student_res.items()}})

        def options(res: Resources, name: str) -> dict[str, Any]:
            return {
                "num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "max_retries": self.max_retries,
                "retry_exceptions": False, "runtime_env": runtime_env, "name": name,
            }

        teacher_task, cells_task = ray.remote(_teacher_task), ray.remote(_cells_task)
        before = record_stamps(plan.out_dir, list(plan.cells))  # before any task can write
        stages_before = stages.stamps(plan.out_dir, plan.suite.name)
        teachers: dict[tuple, Any] = {}  # TeacherNeed.key -> ObjectRef: each teacher one task
        labels: dict[Any, str] = {}  # ObjectRef -> what it runs
        for unit in units(plan.cells, plan.group_size):
            needs = [need for cell in unit for need in teachers_needed(suite, cell)]
            for need in needs:
                if need.key not in teachers:
                    ref = teacher_task.options(**options(teacher_res, need.label)).remote(job, need)
                    teachers[need.key], labels[ref] = ref, need.label
            deps = list({need.key: teachers[need.key] for need in needs}.values())
            label = unit[0].stem + (f" and {len(unit) - 1} more of its task and student" if len(unit) > 1 else "")
            ref = cells_task.options(**options(student_res[unit[0].student], label)).remote(job, unit, *deps)
            labels[ref] = label
        return self._collect(ray, labels, plan, before, stages_before)

    def _collect(
        self, ray: Any, labels: dict[Any, str], plan: Plan, before: dict[CellKey, float | None], stages_before: dict
    ) -> list[Counts]:
        """Wait for every task; the bar counts the records written anywhere on the cluster and shows
        what the tasks running now are doing (:mod:`cud_bench.stages`)."""
        counts: list[Counts] = []
        pending = list(labels)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        desc = f"suite {plan.suite.name} (ray, {nodes} node{'s' if nodes != 1 else ''})"
        with tqdm(total=len(plan.cells), desc=desc, unit="cell", disable=not plan.progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)  # a timeout lets other threads run
                for ref in done:
                    try:
                        counts.append(ray.get(ref))
                    except ray.exceptions.RayError as exc:
                        for other in pending:
                            ray.cancel(other)
                        raise self._failure(ray, exc, labels[ref]) from None
                bar.set_postfix_str(stages.current(plan.out_dir, plan.suite.name, stages_before), refresh=False)
                bar.update(written_since(plan.out_dir, before) - bar.n)
        return counts

    def _failure(self, ray: Any, exc: Exception, label: str) -> BaseException:
        """A task's own error as it was raised; a lost worker or node (after the retries) as a CudBenchError."""
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, BaseException):
            return exc.cause
        return CudBenchError(
            f"{label}: failed on the Ray cluster after {self.max_retries} retries ({type(exc).__name__}: {exc}); "
            "finished cells are kept, rerun the same command to resume"
        )


def units(cells: tuple[CellKey, ...], group_size: int | None = None) -> list[tuple[CellKey, ...]]:
    """The cells one Ray task runs through :func:`cud_bench.runner.run_cells`: a task's cells of one
    student architecture, at most ``group_size`` of them (None: all), in the plan's order.

    Why grouped: the cells of a unit train as one stack (:mod:`cud_bench.batched`) and load
    the task's data and shifted sets once; ``--group-size`` trades that for more tasks to
    spread over the cluster. Models that do not stack still share the loading.
    """
    groups: dict[tuple[str, str], list[CellKey]] = {}
    for cell in cells:
        groups.setdefault((cell.task, cell.student), []).append(cell)
    size = group_size or max(map(len, groups.values()), default=1)
    return [tuple(group[i : i + size]) for group in groups.values() for i in range(0, len(group), size)]


def unwritten(suite: SuiteSpec, cells: tuple[CellKey, ...], out_dir: Path) -> list[CellKey]:
    """The cells of a unit without a record made with the suite's specs now: what a retried
    unit still has to do (its killed attempt wrote each finished record atomically)."""
    from cud_bench.records import is_done
    from cud_bench.runner import expected_specs

    return [cell for cell in cells if not is_done(out_dir, cell, expected_specs(suite, cell))]


def connect(ray: Any, address: str | None) -> None:
    """``ray.init`` without phoning home: :data:`RAY_ENV` first; a new local instance has no dashboard;
    a cluster's head is checked to answer first (:func:`reachable`)."""
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs.update(address="local", include_dashboard=False)
    else:
        kwargs["address"] = reachable(address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise CudBenchError(
            f"cannot connect to a Ray cluster at --address {address}: {exc} (start one with `ray start --head`, "
            "see README 'Running on a cluster')"
        ) from None


def reachable(address: str) -> str:
    """The head's ``HOST:PORT`` that ``address`` names (``auto``: ``$RAY_ADDRESS``, else the address
    file the last ``ray start`` here left), once it accepts a TCP connection within
    :data:`CONNECT_TIMEOUT_S`.

    Why: ``ray.init`` retries an address where no cluster answers for minutes before failing
    (a cluster stopped without ``ray stop`` leaves its address file behind); this fails at once.
    """
    from ray._common.utils import get_ray_address_file
    from ray._private.services import get_ray_address_from_environment

    if "://" in address:  # a Ray client or other scheme: Ray's own checks
        return address
    hint = "start one with `ray start --head`, see README 'Running on a cluster'"
    try:
        resolved = get_ray_address_from_environment(address, None) if address == "auto" else address
    except ConnectionError as exc:
        raise CudBenchError(f"cannot connect to a Ray cluster at --address {address}: {exc} ({hint})") from None
    source = ""
    if address == "auto":
        file = get_ray_address_file(None)
        source = (
            " from $RAY_ADDRESS" if os.environ.get("RAY_ADDRESS")
            else f" found in {file}, left by the last `ray start` here, or from a Ray process running here"
        )
    host, _, port = resolved.rpartition(":")
    if not (host and port.isdigit()):
        raise CudBenchError(f"--address {address}{source}: {resolved!r} is not HOST:PORT (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise CudBenchError(
            f"no Ray cluster answers at {resolved} (--address {address}{source}) within {CONNECT_TIMEOUT_S:g} s: {exc}; "
            f"is it stopped? ({hint}; `ray stop` removes a stopped cluster's address file)"
        ) from None
    return resolved


def _import_ray() -> Any:
    os.environ.update(RAY_ENV)
    try:
        import ray
    except ImportError:
        raise CudBenchError("--executor ray needs the ray package (pinned in requirements.lock; run setup.sh)") from None
    return ray


def _check_feasible(ray: Any, needs: dict[str, Resources]) -> None:
    """Refuse a run whose tasks no node could take (Ray would wait for them forever)."""
    total = ray.cluster_resources()
    for what, res in needs.items():
        for key, amount in (("CPU", res.num_cpus), ("GPU", res.num_gpus)):
            if amount > total.get(key, 0):
                raise CudBenchError(
                    f"a {what} task asks for {amount:g} {key}; the Ray cluster has {total.get(key, 0):g} "
                    f"(add a node with one: `ray start --address HEAD:PORT --num-gpus 1`)"
                )


# -- what runs on the nodes ----------------------------------------------------------------


def _enter(job: Job) -> None:
    """Check that this node sees the run's folders and runs in its numerics mode; one torch thread per CPU."""
    import ray
    import torch

    marker = job.out_dir / job.suite.name / "numerics.json"  # written by the driver before any task
    for path, what in ((marker, "the output folder (--out)"), (job.cache, "the cache ($CUD_BENCH_CACHE)")):
        if not path.exists():
            raise CudBenchError(
                f"node {platform.node()} cannot see {what} at {path}: put it on a filesystem every node "
                "mounts at the same path (see README 'Running on a cluster')"
            )
    numerics.check_applied(numerics.modes.get(job.mode))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(numerics.modes.get(job.mode).threads or max(1, int(cpus)))


@functools.lru_cache(maxsize=4)
def _task_data(suite: SuiteSpec, task: str) -> TaskData:
    """A task's capped splits, kept by the worker process for its next teacher of the same task."""
    from cud_bench.taskdata import prepare_task

    return prepare_task(task, suite)


@functools.lru_cache(maxsize=1)
def _inputs() -> Inputs:
    """The worker process's memo of model inputs (keyed by architecture and texts: safe across tasks)."""
    from cud_bench.taskdata import Inputs

    return Inputs(False)


def _teacher_task(job: Job, need: TeacherNeed) -> Counts:
    from cud_bench.runner import train_teacher

    _enter(job)
    trained, reused = train_teacher(job.suite, _task_data(job.suite, need.task), need, job.teacher_cache, _inputs())
    return 0, trained, reused, {}, {}


def _cells_task(job: Job, cells: tuple[CellKey, ...], *teachers: Counts) -> Counts:
    """``teachers`` (the teacher tasks' results, unused) make Ray start this task only once they are trained."""
    from cud_bench.runner import run_cells

    _enter(job)
    todo = unwritten(job.suite, cells, job.out_dir)  # all of them, but on a retry
    _written, trained, _loaded, not_scored, rebuilt = run_cells(job.suite, todo, job.out_dir, job.teacher_cache, False, job.group_size)
    # every cell of the unit written by this run (some by a killed attempt); teachers loaded here were counted by their own task
    return len(cells), trained, {}, not_scored, rebuilt
