"""Executors: the local default, and a real two-node Ray cluster on this machine.

The Ray test starts two Ray nodes of one CPU each (``ray.cluster_utils.Cluster``), runs a
reduced smoke suite through them, kills the worker node while it runs a task, and checks
that the run completes, every record equals a local run's to the last bit, every teacher
was trained once, and a run resumes across executors both ways. Runs as root and inside
tests/netns.sh (loopback only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cud_bench import executors, runner
from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from cud_bench.executors import Plan
from cud_bench.numerics import modes
from cud_bench.records import CellKey
from cud_bench.suites import suites

# The smoke suite cut to what a loaded 2-core machine runs in a minute: one task, a method
# without a teacher and one with cross-fitted teachers, two seeds, the shifts that need the
# ambiguity ensemble's teachers (so every kind of teacher dependency is exercised).
REDUCED = dataclasses.replace(
    suites.get("smoke"),
    name="ray-smoke",
    tasks=("rt-polarity",),
    methods=("ce", "kd"),
    students=("mlp-l3",),
    n_folds=2,
    max_train=300,
    max_test=150,
    shifts=("ambiguous", "domain"),
)
TEACHERS = 2 * (1 + 2) + 2  # 2 seeds x (full + 2 folds) of kd's CE teacher, and 2 ensemble teachers


def _numbers(record: dict) -> dict:
    """A record without what differs between runs of the same numbers (wall times, provenance)."""
    record = {k: v for k, v in record.items() if k != "provenance"}
    for card in (record["training"], (record["teacher"] or {}).get("training")):
        for key in ("wall_s", "train_examples_per_s"):
            (card or {}).pop(key, None)
    return record


def _assert_same_records(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert _numbers(json.loads((a / name).read_text())) == _numbers(json.loads((b / name).read_text())), name
        with np.load(a / name.replace(".json", ".npz")) as pa, np.load(b / name.replace(".json", ".npz")) as pb:
            assert pa.files == pb.files, name
            for key in pa.files:
                assert pa[key].tobytes() == pb[key].tobytes(), (name, key)


@contextlib.contextmanager
def _one_thread():
    """Ray gives each task one CPU and one thread; a local run compared bit for bit uses one too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _local(out: Path, teachers: Path, suite=REDUCED) -> runner.RunSummary:
    with _one_thread():
        return runner.run_suite(suite, out, progress=False, teacher_cache=teachers)


# -- the executor choice ----------------------------------------------------------------------


def test_cli_refuses_an_option_of_another_executor(capsys, tmp_path):
    assert main(["run", "--suite", "smoke", "--executor", "ray", "--jobs", "2", "--out", str(tmp_path)]) == 2
    assert "the ray executor does not take --jobs" in capsys.readouterr().err
    assert main(["sweep", "--method", "cud", "--grid", "gamma=2", "--address", "auto", "--out", str(tmp_path)]) == 2
    assert "the local executor does not take --address" in capsys.readouterr().err
    assert main(["check", "claims/cud-paper.yaml", "--run", "smoke", "--executor", "rey", "--runs", str(tmp_path)]) == 2
    assert "unknown executor 'rey'; did you mean 'ray'?" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_jobs_is_refused_beside_another_executor(tmp_path):
    with pytest.raises(CudBenchError, match="jobs is an option of the local executor"):
        runner.run_suite(REDUCED, tmp_path, progress=False, jobs=2, executor=executors.create("ray"))
    with executors.use(executors.create("ray")), pytest.raises(CudBenchError, match="this run uses the ray executor"):
        runner.run_suite(REDUCED, tmp_path, progress=False, jobs=2)


def test_teachers_needed_are_a_cells_teacher_its_folds_and_the_ensemble():
    kd = CellKey(REDUCED.name, "rt-polarity", "kd", 1, "cross-fit", "mlp-l3")
    needs = runner.teachers_needed(REDUCED, kd)
    assert [(n.recipe.name, n.seed, n.fold) for n in needs] == [
        ("ce", 1, None), ("ce", 1, 0), ("ce", 1, 1), ("ce", 1000, None), ("ce", 1001, None)
    ]
    ce = dataclasses.replace(kd, method="ce")
    assert [n.seed for n in runner.teachers_needed(REDUCED, ce)] == [1000, 1001]  # the ensemble only
    in_sample = dataclasses.replace(kd, protocol="in-sample")
    assert [n.fold for n in runner.teachers_needed(dataclasses.replace(REDUCED, shifts=("domain",)), in_sample)] == [None]


def test_ray_units_are_a_tasks_cells_of_one_student_architecture_capped_by_the_group_size():
    from cud_bench.executors.ray import units

    suite = dataclasses.replace(REDUCED, tasks=("rt-polarity", "trec"), students=("mlp-l3", "hashed-bag"))
    cells = tuple(runner.expand(suite))
    assert len(cells) == 16
    grouped = units(cells)
    assert [(u[0].task, u[0].student, len(u)) for u in grouped] == [
        ("rt-polarity", "mlp-l3", 4), ("rt-polarity", "hashed-bag", 4), ("trec", "mlp-l3", 4), ("trec", "hashed-bag", 4)
    ]
    assert all({(c.task, c.student) for c in u} == {(u[0].task, u[0].student)} for u in grouped)
    assert sorted(c.stem for u in grouped for c in u) == sorted(c.stem for c in cells)  # every cell once
    capped = units(cells, 3)
    assert [len(u) for u in capped] == [3, 1] * 4 and [c for u in capped for c in u] == [c for u in grouped for c in u]
    assert units(cells, 1) == [(c,) for u in grouped for c in u]
    assert units(()) == []


def test_progress_counts_records_written_since_the_start_whatever_the_clocks(tmp_path):
    from cud_bench.executors.base import record_stamps, written_since

    new, stale, untouched = (CellKey(REDUCED.name, "rt-polarity", m, 0, "cross-fit", "mlp-l3") for m in ("ce", "kd", "cud"))

    def write(cell: CellKey, mtime: float) -> None:
        path = cell.record_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in (path, path.with_suffix(".npz")):
            p.write_text("{}")
            os.utime(p, (mtime, mtime))

    write(stale, 1_000.0)  # a stale record from an earlier run
    write(untouched, 2_000.0)
    before = record_stamps(tmp_path, [new, stale, untouched])
    assert before == {new: None, stale: 1_000.0, untouched: 2_000.0} and written_since(tmp_path, before) == 0
    write(new, 500.0)  # a node whose clock is far behind the driver's
    assert written_since(tmp_path, before) == 1
    write(stale, 900.0)
    assert written_since(tmp_path, before) == 2


def _closed_loopback_port() -> int:
    """A loopback port where nothing listens (bound for a moment by the OS's choice, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_address_where_no_cluster_answers_is_refused_at_once(tmp_path, monkeypatch, capsys):
    from ray._private import services

    port = _closed_loopback_port()
    # A stale address file, as a cluster killed without `ray stop` leaves it (in a Ray temp folder of the test's own).
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setattr(services, "find_gcs_addresses", frozenset)  # no other Ray instance running here
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    clock = time.monotonic()
    with pytest.raises(CudBenchError, match=rf"no Ray cluster answers at 127.0.0.1:{port} \(--address auto found in "
                       + re.escape(str(tmp_path / "ray" / "ray_current_cluster"))):
        runner.run_suite(REDUCED, tmp_path / "out", progress=False, executor=executors.create("ray", address="auto"))
    assert time.monotonic() - clock < 60  # Ray alone retries for minutes
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["numerics.json"]  # no work done

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    args = ["run", "--suite", "smoke", "--executor", "ray", "--address", "auto", "--out", str(tmp_path / "cli")]
    assert main(args) == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port} (--address auto from $RAY_ADDRESS)" in capsys.readouterr().err
    monkeypatch.delenv("RAY_ADDRESS")
    args[args.index("auto")] = f"localhost:{port}"
    assert main(args) == 2
    assert f"no Ray cluster answers at localhost:{port} (--address localhost:{port})" in capsys.readouterr().err
    args[args.index(f"localhost:{port}")] = "localhost"
    assert main(args) == 2
    assert "--address localhost: 'localhost' is not HOST:PORT (or auto)" in capsys.readouterr().err
    args[args.index("localhost")] = f"localhost:{port}"
    (tmp_path / "ray" / "ray_current_cluster").unlink()
    args[args.index(f"localhost:{port}")] = "auto"
    assert main(args) == 2
    assert "Could not find any running Ray instance" in capsys.readouterr().err


# -- a real cluster ----------------------------------------------------------------------------


def _task_running_under(raylet_pid: int) -> bool:
    """Whether a Ray worker started by this raylet is executing one of the run's tasks now (Ray titles
    a busy worker ``ray::<task name>``: ``teacher ...`` or a cell's stem, ``ray::IDLE`` between tasks)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == raylet_pid and title.startswith(("ray::teacher ", f"ray::{REDUCED.tasks[0]}__")):
            return True
    return False


@pytest.fixture
def two_nodes():
    """A Ray cluster of two nodes with one CPU each on this machine: (cluster, worker node)."""
    from ray.cluster_utils import Cluster

    from cud_bench.executors.ray import RAY_ENV

    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)  # the nodes start without usage statistics or metrics
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        # The head writes its address to $RAY_TMPDIR/ray/ray_current_cluster without creating the folder
        # (default /tmp/ray: absent on a fresh machine); keep it in the test's own folder.
        os.makedirs(os.path.join(temp, "ray"))
        mp.setenv("RAY_TMPDIR", temp)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": temp})
        try:
            worker = cluster.add_node(num_cpus=1, temp_dir=temp)
            cluster.wait_for_nodes()
            yield cluster, worker
        finally:
            cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def test_ray_cluster_run_equals_a_local_run_and_survives_a_lost_node(tmp_path, two_nodes):
    cluster, worker = two_nodes
    local = tmp_path / "local"
    reference = _local(local, tmp_path / "local-teachers")
    assert reference.cells_written == 4 and reference.teachers_trained == {"ce": TEACHERS}
    records = sorted(p.name for p in (local / REDUCED.name / "records").glob("*.json"))

    # Started locally: one cell done before the cluster takes over.
    out, teachers = tmp_path / "ray", tmp_path / "ray-teachers"
    (out / REDUCED.name / "records").mkdir(parents=True)
    for name in ("numerics.json", f"records/{records[0]}", f"records/{records[0].replace('.json', '.npz')}"):
        shutil.copy(local / REDUCED.name / name, out / REDUCED.name / name)
    # What a retried unit redoes: the cells without a current record (a record of other specs is redone).
    from cud_bench.executors.ray import unwritten

    cells = tuple(runner.expand(REDUCED))
    done = next(c for c in cells if c.record_path(out).name == records[0])
    assert unwritten(REDUCED, cells, local) == [] and unwritten(REDUCED, cells, out) == [c for c in cells if c != done]
    assert unwritten(dataclasses.replace(REDUCED, max_test=140), cells, local) == list(cells)

    raylet = worker.all_processes["raylet"][0].process.pid
    finished, killed = threading.Event(), threading.Event()

    def kill_the_worker_node_mid_task() -> None:
        while not finished.is_set():
            if _task_running_under(raylet):
                time.sleep(0.5)  # into the task's work, not its start
                cluster.remove_node(worker, allow_graceful=False)
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker_node_mid_task, daemon=True)
    killer.start()
    try:
        summary = runner.run_suite(
            REDUCED, out, progress=False, teacher_cache=teachers, executor=executors.create("ray", address=cluster.address),
            group_size=2,  # the 3 missing cells as two Ray tasks, one stack each
        )
    finally:
        finished.set()
        killer.join(timeout=60)
    assert killed.is_set(), "the worker node never ran a task"
    assert (summary.cells_done_before, summary.cells_written) == (1, 3)
    # Each teacher trained once on the cluster (a retry of a teacher killed after its last write finds it cached).
    assert sum(summary.teachers_trained.values()) + sum(summary.teachers_reused.values()) == TEACHERS
    assert len(list(teachers.glob("*/sha256.json"))) == TEACHERS
    assert sorted(p.name for p in (out / REDUCED.name / "records").glob("*.json")) == records
    _assert_same_records(local / REDUCED.name / "records", out / REDUCED.name / "records", records)
    for name in records[1:]:
        numerics = json.loads((out / REDUCED.name / "records" / name).read_text())["provenance"]["numerics"]
        assert numerics["torch_threads"] == 1

    # A task no node can take (the finetune architecture asks for a GPU) is refused, not left waiting.
    finetune = suites.get("finetune").restrict(tasks=["trec"], methods=["ce"], seeds=[0])
    plan = Plan(finetune, tuple(runner.expand(finetune)), tmp_path / "ft", None, modes.get("native"), False)
    with pytest.raises(CudBenchError, match="asks for 1 GPU; the Ray cluster has 0"):
        executors.create("ray", address=cluster.address).run(plan)

    # Started on the cluster, finished locally.
    (out / REDUCED.name / "records" / records[-1]).unlink()
    resumed = _local(out, teachers)
    assert (resumed.cells_done_before, resumed.cells_written, resumed.teachers_trained) == (3, 1, {})
    _assert_same_records(local / REDUCED.name / "records", out / REDUCED.name / "records", records)
