"""Out-of-scope detection on clinc150: its own out-of-scope test queries (hub data; for users online)."""

from shifts.base import register_shift
from shifts.heldout import HeldOutClasses

register_shift(
    HeldOutClasses(
        "clinc150-oos",
        task="clinc150",
        source_task="clinc150",
        splits=("oos_test",),
        description="clinc150's model on the 1,000 out-of-scope test queries of CLINC OOS ('plus'), which "
        "match none of the 150 intents; needs the hub data set (`cud-bench data fetch --tasks clinc150`).",
    )
)
