"""KD from a focal-loss teacher (Lin et al. 2017; Mukhoti et al. 2020 on calibration)."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("focal")
def focal() -> MethodSpec:
    return MethodSpec(
        name="focal",
        teacher=component("teacher", "focal"),
        transform=component("transform", "identity"),
        student=component("student", "kd"),
        description="focal-loss teacher (gamma=2), raw targets, KD student",
    )
