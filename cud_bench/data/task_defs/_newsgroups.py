"""How the 20 newsgroups group into super-categories, and which groups derived tasks hold out.

Super-categories follow the group names' hierarchy; ``misc.forsale`` is left
out of the sub-group tasks, being the only group of its kind. In each
super-category the first groups (in alphabetical order) are the *source*
groups a model trains on and the rest the *target* groups it meets under
shift: rec trains on vehicles and is tested on sports, sci on crypt and
electronics and tested on medicine and space, and so on. For out-of-scope
detection the last group of each super-category is held out, so that every
out-of-scope topic has in-scope neighbours (near out-of-scope).
"""

from __future__ import annotations

SUPER_CATEGORIES = {
    "comp": (
        "comp.graphics",
        "comp.os.ms-windows.misc",
        "comp.sys.ibm.pc.hardware",
        "comp.sys.mac.hardware",
        "comp.windows.x",
    ),
    "rec": ("rec.autos", "rec.motorcycles", "rec.sport.baseball", "rec.sport.hockey"),
    "sci": ("sci.crypt", "sci.electronics", "sci.med", "sci.space"),
    "politics": ("talk.politics.guns", "talk.politics.mideast", "talk.politics.misc"),
    "religion": ("alt.atheism", "soc.religion.christian", "talk.religion.misc"),
}
N_SOURCE = {"comp": 3, "rec": 2, "sci": 2, "politics": 2, "religion": 2}  # source groups per super-category
SUPER_OF = {group: sup for sup, groups in SUPER_CATEGORIES.items() for group in groups}
SOURCE_GROUPS = tuple(g for sup, groups in SUPER_CATEGORIES.items() for g in groups[: N_SOURCE[sup]])
TARGET_GROUPS = tuple(g for sup, groups in SUPER_CATEGORIES.items() for g in groups[N_SOURCE[sup] :])
HELD_OUT_GROUPS = tuple(groups[-1] for groups in SUPER_CATEGORIES.values())
