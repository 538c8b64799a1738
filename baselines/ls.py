"""KD from a label-smoothed teacher (Szegedy et al. 2016; Müller et al. 2019)."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("ls")
def ls() -> MethodSpec:
    return MethodSpec(
        name="ls",
        teacher=component("teacher", "label-smoothing"),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="label-smoothed teacher (eps=0.1), raw targets, KD student",
    )
