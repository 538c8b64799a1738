"""Movie reviews to patient drug reviews: rt-polarity's model on drug-reviews' positive and negative reviews."""

from shifts.base import register_shift
from shifts.domain import DomainTransfer

register_shift(
    DomainTransfer(
        "rt-polarity-to-drug-reviews",
        task="rt-polarity",
        source_task="drug-reviews",
        label_map={"negative": "rotten", "positive": "fresh"},
        description="Sentiment from movie-review snippets to drugs.com patient reviews: drug-reviews' negative "
        "and positive reviews (all splits) as rotten and fresh; neutral reviews left out.",
    )
)
