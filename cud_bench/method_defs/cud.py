"""CUD: a DUS-trained teacher whose targets are W-clipped, distilled with tempered KD."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("cud")
def cud() -> MethodSpec:
    return MethodSpec(
        name="cud",
        teacher=component("teacher", "dus"),
        transform=component("transform", "wclip"),
        student=component("student", "kd"),
        description="Calibrated Uncertainty Distillation: DUS teacher, W-Clip targets, KD student",
    )
