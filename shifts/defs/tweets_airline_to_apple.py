"""Airline tweets to tweets about Apple: another collection of tweets-sentiment."""

from shifts.base import register_shift
from shifts.domain import TweetCollectionTransfer

register_shift(
    TweetCollectionTransfer(
        "tweets-airline-to-apple",
        collection="apple",
        description="Tweet sentiment from customers' tweets to US airlines to tweets about Apple (same "
        "labels, same crowd annotation); collections split by the keyword rules of tweets-sentiment (v1).",
    )
)
