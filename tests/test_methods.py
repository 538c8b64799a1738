"""Methods as compositions: the registered table, pinned hyperparameters, plugins from outside."""

from __future__ import annotations

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
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_methods_are_the_documented_compositions(name):
    spec = get_method(name)
    parts = (spec.teacher and spec.teacher.name, spec.transform and spec.transform.name, spec.student.name)
    assert parts == EXPECTED[name]


def test_cud_pins_the_paper_defaults():
    spec = get_method("cud")
    assert spec.teacher.params == {
        "lam_ce": 0.0, "lam_f": 1.0, "alpha": 1.0, "gamma": 10.0, "lam_h": 0.1, "tau_gate": 0.5, "rho": 0.1, "beta": 2.0
    }
    assert spec.transform.params == {"eta": 0.5, "m": 0.7}
    assert spec.student.params == {"T": 2.0, "lam_kd": 0.8, "lam_ce": 0.2}


def test_a_hyperparameter_change_changes_the_spec_hash():
    base = get_method("cud")
    other = MethodSpec("cud", component("teacher", "dus", gamma=3.0), base.transform, base.student)
    assert other.spec_hash() != base.spec_hash()
    same = MethodSpec("cud", component("teacher", "dus"), base.transform, base.student, description="words only")
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
