"""A task from outside the package, registered by an entry point naming its decorated function
(README "Adding a task"; issue 13, item 7), then run like any task."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from cud_bench import runner
from cud_bench.data import tasks as task_module
from cud_bench.data.tasks import load_task, tasks
from cud_bench.registry import Registry
from cud_bench.suites import SuiteSpec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rt_category.py"
README = Path(__file__).resolve().parent.parent / "README.md"


def _plugin(tmp_path: Path, group: str, line: str, module: Path | None = None) -> None:
    if module is not None:
        shutil.copy(module, tmp_path / module.name)
    dist = tmp_path / "plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{line}\n")


@pytest.fixture
def rt_category(tmp_path, monkeypatch):
    _plugin(tmp_path, "cud_bench.tasks", "rt-category = rt_category:read", EXAMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(tasks, "_loaded", False)
    yield
    tasks.unregister("rt-category")
    sys.modules.pop("rt_category", None)


def test_the_readme_shows_the_example_file():
    readme = README.read_text()
    assert "### Adding a task: one file" in readme
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert body in readme  # the README's code is this file, so this test runs the README's example


def test_a_task_from_outside_the_package_registers_by_entry_point_and_runs(rt_category, tmp_path):
    assert "rt-category" in tasks.names()  # no "task 'rt-category' is already registered"
    splits = load_task("rt-category")
    assert splits["train"].features["label"].names == ["plot", "rotten", "fresh"]
    assert {s: len(splits[s]) > 1000 for s in ("train", "validation", "test")} == {"train": True, "validation": True, "test": True}
    suite = SuiteSpec(
        name="outside", tasks=("rt-category",), methods=("ce",), seeds=(0,), protocols=("in-sample",),
        teacher="hashed-bag", students=("hashed-bag",), max_train=150, max_test=60,
    )
    summary = runner.run_suite(suite, tmp_path / "runs", progress=False)
    assert summary.cells_written == 1
    assert (tmp_path / "runs" / "outside" / "records" / "rt-category__ce__hashed-bag__in-sample__seed0.json").is_file()


def test_entry_points_naming_a_decorated_function_register_once(tmp_path, monkeypatch):
    """The registry pattern tasks use (a decorator that registers a wrapper) loads from an entry point."""
    things: Registry = Registry("thing", entry_point_group="cud_bench.test_things")
    monkeypatch.setattr(task_module, "_test_things", things, raising=False)
    (tmp_path / "my_thing.py").write_text(
        "from cud_bench.data import tasks as t\n"
        "def register(fn):\n    t._test_things.register('my-thing', {'wraps': fn})\n    return fn\n"
        "@register\ndef build():\n    return 1\n"
    )
    _plugin(tmp_path, "cud_bench.test_things", "my-thing = my_thing:build")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        assert things.get("my-thing")["wraps"]() == 1
    finally:
        sys.modules.pop("my_thing", None)
