"""CUD: a DUS-trained teacher whose targets are W-clipped, distilled with tempered KD.

The DUS teacher's unstated hyperparameters are set per task by the faithfulness rule
(:mod:`cud_bench.method_defs.dus_per_task`); release 1.0's single setting is ``cud-lamce0``.
"""

from cud_bench.method_defs import dus_per_task
from cud_bench.methods import MethodSpec, register_method
from cud_bench.recipes import component


@register_method("cud")
def cud() -> MethodSpec:
    return MethodSpec(
        name="cud",
        teacher=component("teacher", "dus"),
        transform=component("transform", "wclip"),
        student=component("student", "kd"),
        description="Calibrated Uncertainty Distillation: DUS teacher (setting per task by the faithfulness rule), "
        "W-Clip targets, KD student",
        teacher_by_task=dus_per_task.teachers(),
    )

