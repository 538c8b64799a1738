"""Out-of-scope detection on 20newsgroups: five groups never seen in training come back as inputs."""

from cud_bench.data.task_defs._newsgroups import HELD_OUT_GROUPS
from shifts.base import register_shift
from shifts.heldout import HeldOutClasses

register_shift(
    HeldOutClasses(
        "20newsgroups-heldout-groups",
        task="20newsgroups-15groups",
        source_task="20newsgroups",
        classes=HELD_OUT_GROUPS,
        description="20newsgroups-15groups' model on posts of the five groups it was trained without "
        f"({', '.join(HELD_OUT_GROUPS)}; one per super-category, so each has in-scope neighbours).",
    )
)
