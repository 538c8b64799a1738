"""Ablation: the DUS teacher's raw targets (no W-Clip); the same per-task DUS teacher as ``cud``."""

from cud_bench.method_defs import dus_per_task
from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("cud-dus")
def cud_dus() -> MethodSpec:
    return MethodSpec(
        name="cud-dus",
        teacher=component("teacher", "dus"),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="CUD ablation: DUS teacher (setting per task, as cud's), raw targets, KD student",
        teacher_by_task=dus_per_task.teachers(),
    )
