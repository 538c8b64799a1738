"""Model-defined ambiguity: test examples on which differently seeded teachers disagree."""

from shifts.ambiguity import TeacherDisagreement
from shifts.base import register_shift

register_shift(
    TeacherDisagreement(
        "teacher-disagreement",
        description="Test examples on which the task's teachers of one recipe, trained with different seeds, "
        "do not all predict the same class; uses their predictions only, no labels.",
    )
)
