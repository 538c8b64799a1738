"""Human-defined ambiguity: tweets whose crowd agreement is below 0.7 (severity 1) or 0.6 (severity 2)."""

from shifts.ambiguity import LowAgreement
from shifts.base import register_shift

register_shift(
    LowAgreement(
        "tweets-low-agreement",
        tasks=("tweets-sentiment", "tweets-airline"),
        levels=(0.7, 0.6),
        description="Test tweets on which the crowd agreed less: agreement (the corpus' `confidence`) below "
        "0.7 at severity 1, below 0.6 at severity 2; tweets without an agreement score are left out.",
    )
)
