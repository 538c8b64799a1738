"""tweets-airline: the airline collection of tweets-sentiment alone, for transfer to the other collections.

Tweets addressed to six US airlines (Twitter US Airline Sentiment), picked out
of tweets-sentiment by the keyword rules in ``_tweet_collections``; the same
three labels and the same extra columns. The shifts ``tweets-airline-to-nfl`` and
the like score a model trained here on the other collections.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.task_defs import tweets_sentiment
from cud_bench.data.task_defs._tweet_collections import collection_of
from cud_bench.data.tasks import register_task


@register_task(
    tweets_sentiment.SOURCE,
    name="tweets-airline",
    version=1,
    label_names=("negative", "neutral", "positive"),
    test_fraction=0.2,
    val_fraction=0.1,
    notes="The airline collection of tweets-sentiment (keyword rules v1); test 20%, validation 10% of the rest.",
)
def read() -> dict[str, pd.DataFrame]:
    frame = tweets_sentiment.read()["all"]
    return {"all": frame[frame["raw_text"].map(collection_of) == "airline"]}
