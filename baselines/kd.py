"""Vanilla knowledge distillation (Hinton et al. 2015) from a cross-entropy teacher."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("kd")
def kd() -> MethodSpec:
    return MethodSpec(
        name="kd",
        teacher=component("teacher", "ce"),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="vanilla KD: CE teacher, raw targets, KD student",
    )
