"""Airline tweets to tweets about self-driving cars: tweets-airline's model on another collection of tweets-sentiment."""

from shifts.base import register_shift
from shifts.domain import TweetCollectionTransfer

register_shift(
    TweetCollectionTransfer(
        "tweets-airline-to-self-driving",
        collection="self-driving",
        description="Tweet sentiment from customers' tweets to US airlines to tweets about self-driving cars, the same three labels "
        "and crowd annotation; collections split by the keyword rules of tweets-sentiment (v1).",
    )
)
