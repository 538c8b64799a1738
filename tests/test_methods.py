"""Methods as compositions: the registered table, pinned hyperparameters, plugins from outside."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
from pathlib import Path

import pytest
import torch

from cud_bench import cud, losses
from cud_bench.errors import CudBenchError
from cud_bench.methods import MethodSpec, describe_methods, get_method, methods
from cud_bench.recipes import TeacherOutputs, component, teacher_recipes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "confidence_penalty.py"

# (teacher recipe, target transform, student recipe) for every method the issue names.
EXPECTED = {
    "ce": (None, None, "ce"),
    "kd": ("ce", "identity", "kd"),
    "ls": ("label-smoothing", "identity", "kd"),
    "focal": ("focal", "identity", "kd"),
    "ts": ("ce", "temperature-scaled", "kd"),
    "cud": ("dus", "wclip", "kd"),
    "cud-dus": ("dus", "identity", "kd"),
    "cud-wclip": ("ce", "wclip", "kd"),
    "cud-lamce0": ("dus", "wclip", "kd"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_methods_are_the_documented_compositions(name):
    spec = get_method(name)
    parts = (spec.teacher and spec.teacher.name, spec.transform and spec.transform.name, spec.student.name)
    assert parts == EXPECTED[name]


def test_cud_pins_the_paper_values_and_takes_its_dus_setting_per_task():
    spec = get_method("cud")
    stated = {"lam_f": 1.0, "alpha": 1.0, "gamma": 10.0, "lam_h": 0.1}  # the paper's (lam_f: ours, fixed)
    per_task = dict(spec.teacher_by_task)
    assert {"20newsgroups", "reuters-r52", "reuters-r8", "bbc-news", "drug-reviews", "tweets-airline", "rt-polarity"} <= set(per_task)
    for task, teacher in per_task.items():
        assert teacher.name == "dus" and {k: teacher.params[k] for k in stated} == stated
        assert spec.for_task(task).teacher == teacher and spec.for_task(task).teacher_by_task == ()
    # the table's own settings differ between tasks (else it would be one global setting)
    assert len({c.spec_hash() for c in per_task.values()}) > 1
    assert spec.for_task("reuters-r8").teacher.params["lam_ce"] == 0.0 and spec.for_task("20newsgroups").teacher.params["lam_ce"] == 0.1
    assert get_method("cud-dus").teacher_by_task == spec.teacher_by_task  # the ablation distils the same teacher
    release1 = {"lam_ce": 0.0, "lam_f": 1.0, "alpha": 1.0, "gamma": 10.0, "lam_h": 0.1, "tau_gate": 0.5, "rho": 0.1, "beta": 2.0}
    assert get_method("cud-lamce0").teacher.params == release1 and get_method("cud-lamce0").teacher_by_task == ()
    assert get_method("cud-lamce0").for_task("banking77") == get_method("cud-lamce0")  # one setting runs anywhere
    assert spec.transform.params == {"eta": 0.5, "m": 0.7}
    assert spec.student.params == {"T": 2.0, "lam_kd": 0.8, "lam_ce": 0.2}
    assert spec.parts["teacher"] == "dus(alpha=1.0,gamma=10.0,lam_f=1.0,lam_h=0.1; per task: beta,lam_ce,rho,tau_gate)"


def test_a_per_task_method_refuses_a_task_outside_its_table():
    with pytest.raises(CudBenchError, match="has none for task 'banking77'.*cud-bench faithfulness --tasks banking77"):
        get_method("cud").for_task("banking77")


def test_a_variant_of_a_per_task_method_overrides_every_task_teacher():
    base, variant = get_method("cud"), get_method("cud+gamma=5")
    assert variant.teacher.params["gamma"] == 5.0
    for (task, teacher), (vtask, vteacher) in zip(base.teacher_by_task, variant.teacher_by_task):
        assert vtask == task and vteacher.params == {**teacher.params, "gamma": 5.0}
    assert get_method("cud+eta=0.3").teacher_by_task == base.teacher_by_task  # other parts leave the table alone
    with pytest.raises(CudBenchError, match="out of range"):
        get_method("cud+rho=-1")


def test_the_per_task_table_enters_the_hash_only_when_set():
    base = get_method("cud")
    without = dataclasses.replace(base, teacher_by_task=())
    assert without.spec_hash() != base.spec_hash() and "teacher_by_task" not in without.to_dict()
    assert "teacher_by_task" in base.to_dict()
    changed = dataclasses.replace(base, teacher_by_task=base.teacher_by_task[:-1])
    assert changed.spec_hash() != base.spec_hash()
    # a method without a table hashes as before the field existed (kd's hash in release 1.0's entries)
    assert get_method("kd").spec_hash() == "29e51f6e2534"


def test_a_hyperparameter_change_changes_the_spec_hash():
    base = get_method("cud")
    other = MethodSpec("cud", component("teacher", "dus", gamma=3.0), base.transform, base.student, teacher_by_task=base.teacher_by_task)
    assert other.spec_hash() != base.spec_hash()
    same = MethodSpec(
        "cud", component("teacher", "dus"), base.transform, base.student, description="words only", teacher_by_task=base.teacher_by_task
    )
    assert same.spec_hash() == base.spec_hash()


def test_components_build_the_losses_they_name():
    logits, labels = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]]), torch.tensor([0, 2])
    built = component("teacher", "dus", gamma=3.0).build()
    assert torch.equal(built(logits, labels, None), cud.dus_loss(logits, labels, gamma=3.0))
    built = component("teacher", "focal").build()
    assert torch.equal(built(logits, labels, None), losses.focal_loss(logits, labels, gamma=2.0))


def test_wclip_transform_reports_the_rows_it_changed():
    import numpy as np

    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]))
    labels = np.array([0, 0, 2])
    result = component("transform", "wclip").build()(TeacherOutputs(logits, labels, logits, labels))
    assert result.rows_changed == pytest.approx(1 / 3)
    np.testing.assert_allclose(result.probs[1], [0.55, 0.35, 0.1])


def test_unknown_hyperparameters_and_names_are_refused():
    with pytest.raises(CudBenchError, match="no hyperparameter gamm"):
        component("teacher", "dus", gamm=3.0)
    with pytest.raises(KeyError, match="did you mean 'focal'"):
        get_method("focall")
    with pytest.raises(ValueError, match="needs a teacher"):
        MethodSpec("bad", None, None, component("student", "kd"))


def test_a_method_from_outside_the_package_registers_by_entry_point(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "confidence_penalty.py")
    dist = tmp_path / "cp_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cp-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cud_bench.methods]\nconfidence-penalty = confidence_penalty:confidence_penalty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(methods, "_loaded", False)
    try:
        assert "confidence-penalty" in methods.names()
        spec = get_method("confidence-penalty")
        assert (spec.teacher.name, spec.teacher.params) == ("confidence-penalty", {"beta": 0.1})
        assert any(row["method"] == "confidence-penalty" for row in describe_methods())
        loss = spec.teacher.build()(torch.zeros(2, 3), torch.tensor([0, 1]), None)
        assert loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item() - 0.1 * torch.log(torch.tensor(3.0)).item())
    finally:
        methods.unregister("confidence-penalty")
        teacher_recipes.unregister("confidence-penalty")
        sys.modules.pop("confidence_penalty", None)


def test_method_variants_change_one_hyperparameter_and_say_so():
    from cud_bench.methods import variant_name

    base, variant = get_method("cud"), get_method("cud+gamma=5+transform.eta=0.3")
    assert variant.teacher.params == {**base.teacher.params, "gamma": 5.0}
    assert variant.transform.params == {"eta": 0.3, "m": base.transform.params["m"]}
    assert variant.student == base.student and variant.name == "cud+gamma=5+transform.eta=0.3"
    assert variant.spec_hash() != base.spec_hash()
    assert variant_name("cud", {"gamma": 5, "transform.eta": 0.3}) == variant.name
    for name, message in [
        ("cud+lam_ce=1", "is ambiguous"),  # the DUS teacher and the KD student both have lam_ce
        ("cud+colour=1", "matches no hyperparameter"),
        ("cud+gamma", "is not param=value"),
        ("cud+gamma=high", "'high' is not a float"),
    ]:
        with pytest.raises(CudBenchError, match=message):
            get_method(name)


def test_sweep_grid_expands_to_checked_variants():
    from cud_bench.sweep import parse_grid, sweep_methods

    grid = parse_grid(["gamma=2,5", "eta=0.3"])
    assert sweep_methods("cud", grid) == ["cud+gamma=2+eta=0.3", "cud+gamma=5+eta=0.3"]
    for bad in (["gamma"], ["gamma="], ["gamma=1", "gamma=2"]):
        with pytest.raises(CudBenchError, match="expected PARAM=V1,V2"):
            parse_grid(bad)
    with pytest.raises(CudBenchError, match="matches no hyperparameter"):
        sweep_methods("cud", {"colour": ["red"]})
