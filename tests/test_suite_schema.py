"""Suite files and method variants are validated by one schema before any work (issue 13, item 4)."""

from __future__ import annotations

import dataclasses

import pytest

from cud_bench import runner
from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from cud_bench.methods import get_method
from cud_bench.suites import load_suite, suites

BASE = "tasks: [rt-polarity]\nmethods: [kd]\nseeds: [0, 1]\n"


def _load(tmp_path, text, name="mine"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_suite(str(path))


@pytest.mark.parametrize(
    "extra, field, why",
    [
        ("seeds: ['0']\n", "seeds", "item 0 must be an integer, got '0' (str)"),
        ("seeds: [0.5]\n", "seeds", "item 0 must be an integer, got 0.5"),
        ("seeds: [x]\n", "seeds", "item 0 must be an integer, got 'x'"),
        ("seeds: [[1]]\n", "seeds", "item 0 must be an integer, got [1]"),
        ("seeds: 0\n", "seeds", "must be a list, got 0"),
        ("seeds: [0, 0]\n", "seeds", "lists 0 more than once"),
        ("seeds: [-1]\n", "seeds", "must be >= 0"),
        ("max_train: -5\n", "max_train", "must be a positive integer or null"),
        ("max_test: '300'\n", "max_test", "must be a positive integer or null"),
        ("n_folds: 1\n", "n_folds", "must be an integer >= 2"),
        ("tasks: [rt-polarity, rt-polarity]\n", "tasks", "lists rt-polarity more than once"),
        ("shifts: [corruptoin]\n", "shifts", "unknown shift or shift family 'corruptoin'; did you mean 'corruption'"),
        ("name: ../../escape\n", "name", "must be a plain folder name"),
        ("name: a/b\n", "name", "must be a plain folder name"),
        ("methods: [cdu]\n", "methods", "did you mean 'cud'"),
        ("methods: [kd+T=0]\n", "methods", "KD temperature T must be a positive number"),
        ("tasks: [rt-polarty]\n", "tasks", "did you mean 'rt-polarity'"),
        ("students: [mlp-l4]\n", "students", "did you mean"),
        ("protocols: [crossfit]\n", "protocols", "did you mean 'cross-fit'"),
    ],
)
def test_bad_suite_fields_are_refused_with_the_field_named(tmp_path, extra, field, why):
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith(extra.split(":")[0] + ":")) + "\n" + extra
    with pytest.raises(CudBenchError, match=r"suite file .*mine\.yaml: field '" + field + "'.*" + _re(why)):
        _load(tmp_path, text)


def _re(text):
    import re

    return re.escape(text)


def test_a_valid_suite_file_loads(tmp_path):
    suite = _load(tmp_path, BASE + "max_train: 200\nshifts: [corruption, char-swap]\n")
    assert (suite.seeds, suite.max_train, suite.shifts) == ((0, 1), 200, ("corruption", "char-swap"))


def test_the_cli_exits_2_before_any_work(tmp_path):
    path = tmp_path / "escape.yaml"
    path.write_text(BASE + "name: ../../escape\n")
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    path.write_text(BASE + "shifts: [corruptoin]\n")
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape").exists()


def test_cli_filters_are_checked_too(tmp_path):
    with pytest.raises(CudBenchError, match="field 'seeds' lists 1 more than once"):
        suites.get("smoke").restrict(seeds=[1, 1])
    with pytest.raises(CudBenchError, match="kd\\+T=0.*out of range"):
        runner.run_suite(suites.get("smoke").restrict(methods=["kd+T=0"]), tmp_path, progress=False)
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("variant", ["kd+T=0", "kd+T=-1", "kd+T=nan", "cud+eta=2", "ls+eps=1"])
def test_out_of_range_method_variants_are_refused_up_front(variant):
    with pytest.raises(CudBenchError, match=f"method variant '{_re(variant)}'.*out of range"):
        get_method(variant)


def test_registered_suites_pass_the_schema():
    for name in suites.names():
        suite = suites.get(name)
        assert dataclasses.replace(suite) == suite
