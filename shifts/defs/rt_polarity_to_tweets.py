"""Movie reviews to tweets: rt-polarity's model on the positive and negative tweets of tweets-sentiment."""

from shifts.base import register_shift
from shifts.domain import DomainTransfer

register_shift(
    DomainTransfer(
        "rt-polarity-to-tweets",
        task="rt-polarity",
        source_task="tweets-sentiment",
        label_map={"negative": "rotten", "positive": "fresh"},
        description="Sentiment from movie-review snippets to tweets (airlines, NFL, self-driving cars, Apple, "
        "...): tweets-sentiment's negative and positive tweets as rotten and fresh; neutral tweets left out.",
    )
)
