"""KD from a CE teacher whose targets are temperature-scaled (Guo et al. 2017) on validation data."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("ts")
def ts() -> MethodSpec:
    return MethodSpec(
        name="ts",
        teacher=component("teacher", "ce"),
        transform=component("transform", "temperature-scaled"),
        student=component("student", "kd"),
        description="CE teacher, targets softened by the validation-fitted temperature, KD student",
    )
