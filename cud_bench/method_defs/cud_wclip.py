"""Ablation: W-Clip on a cross-entropy teacher's targets (no DUS)."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("cud-wclip")
def cud_wclip() -> MethodSpec:
    return MethodSpec(
        name="cud-wclip",
        teacher=component("teacher", "ce"),
        transform=component("transform", "wclip"),
        student=component("student", "kd"),
        description="CUD ablation: CE teacher, W-Clip targets, KD student",
    )
