"""Model-defined ambiguity: test examples on which differently seeded teachers disagree."""

from shifts.ambiguity import TeacherDisagreement
from shifts.base import register_shift

register_shift(
    TeacherDisagreement(
        "teacher-disagreement",
        description="Test examples on which CE teachers trained with the suite's ensemble seeds (never one of "
        "its training seeds, so never a teacher any method distils) do not all predict the same class; uses "
        "their predictions only, no labels.",
    )
)
