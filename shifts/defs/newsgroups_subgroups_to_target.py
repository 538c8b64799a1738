"""20newsgroups sub-group transfer: trained on some groups of each super-category, tested on the others."""

from cud_bench.data.task_defs._newsgroups import SOURCE_GROUPS, SUPER_OF, TARGET_GROUPS
from shifts.base import register_shift
from shifts.domain import DomainTransfer

register_shift(
    DomainTransfer(
        "20newsgroups-subgroups-to-target",
        task="20newsgroups-subgroups",
        source_task="20newsgroups",
        label_map={group: SUPER_OF[group] for group in TARGET_GROUPS},
        description="Topic shift inside each super-category: 20newsgroups-subgroups' model (trained on "
        f"{', '.join(SOURCE_GROUPS)}) on posts of the other groups ({', '.join(TARGET_GROUPS)}), labelled "
        "by super-category.",
    )
)
