"""No distillation: the student trained on the gold labels alone."""

from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("ce")
def ce() -> MethodSpec:
    return MethodSpec(
        name="ce",
        teacher=None,
        transform=None,
        student=component("student", "ce"),
        description="student trained with cross-entropy on labels, no teacher",
    )
