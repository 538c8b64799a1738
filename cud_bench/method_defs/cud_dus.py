"""Ablation: the DUS teacher's raw targets (no W-Clip)."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("cud-dus")
def cud_dus() -> MethodSpec:
    return MethodSpec(
        name="cud-dus",
        teacher=component("teacher", "dus"),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="CUD ablation: DUS teacher, raw targets, KD student",
    )
