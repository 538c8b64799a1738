"""massive: MASSIVE en-US virtual-assistant utterances in 60 intents (Amazon).

The hub repository ships only a loading script, which ``datasets`` no longer
runs, so its Parquet export is read. Columns ``utt`` (text) and ``intent``;
the hub's train/validation/test splits are kept.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import PARQUET_REVISION, HubSource
from cud_bench.data.task_defs._hub import hub_frames
from cud_bench.data.tasks import register_task

SOURCE = HubSource("AmazonScience/massive", revision=PARQUET_REVISION, data_dir="en-US")
INTENTS = (  # the hub's ClassLabel order (massive.py's _INTENTS)
    "datetime_query", "iot_hue_lightchange", "transport_ticket", "takeaway_query", "qa_stock",
    "general_greet", "recommendation_events", "music_dislikeness", "iot_wemo_off", "cooking_recipe",
    "qa_currency", "transport_traffic", "general_quirky", "weather_query", "audio_volume_up",
    "email_addcontact", "takeaway_order", "email_querycontact", "iot_hue_lightup", "recommendation_locations",
    "play_audiobook", "lists_createoradd", "news_query", "alarm_query", "iot_wemo_on", "general_joke",
    "qa_definition", "social_query", "music_settings", "audio_volume_other", "calendar_remove",
    "iot_hue_lightdim", "calendar_query", "email_sendemail", "iot_cleaning", "audio_volume_down",
    "play_radio", "cooking_query", "datetime_convert", "qa_maths", "iot_hue_lightoff", "iot_hue_lighton",
    "transport_query", "music_likeness", "email_query", "play_music", "audio_volume_mute", "social_post",
    "alarm_set", "qa_factoid", "calendar_set", "play_game", "alarm_remove", "lists_remove",
    "transport_taxi", "recommendation_movies", "iot_coffee", "music_query", "play_podcasts", "lists_query",
)  # fmt: skip


@register_task(
    SOURCE,
    name="massive",
    version=1,
    label_names=INTENTS,
    notes="Hub task; en-US train/validation/test kept (11,514 / 2,033 / 2,974 upstream).",
)
def read() -> dict[str, pd.DataFrame]:
    return hub_frames(SOURCE, "utt", "intent", INTENTS)
