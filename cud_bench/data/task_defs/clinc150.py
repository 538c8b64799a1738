"""clinc150: task-oriented queries in 150 in-scope intents plus out-of-scope queries (CLINC OOS, "plus").

The hub labels out-of-scope queries with the intent ``oos``. It is kept out of
the 150 classes: those rows form the extra splits ``oos_train``,
``oos_validation`` and ``oos_test`` (label -1), for out-of-scope detection.
The hub's train/validation/test splits are kept.
"""

from __future__ import annotations

import pandas as pd

from cud_bench.data.sources import PARQUET_REVISION, HubSource
from cud_bench.data.task_defs._hub import hub_frames
from cud_bench.data.tasks import register_task

SOURCE = HubSource("clinc/clinc_oos", revision=PARQUET_REVISION, data_dir="plus")
OUT_OF_SCOPE = "oos"
HUB_INTENTS = (  # the hub's ClassLabel order, "oos" included
    "restaurant_reviews", "nutrition_info", "account_blocked", "oil_change_how", "time", "weather",
    "redeem_rewards", "interest_rate", "gas_type", "accept_reservations", "smart_home", "user_name",
    "report_lost_card", "repeat", "whisper_mode", "what_are_your_hobbies", "order", "jump_start",
    "schedule_meeting", "meeting_schedule", "freeze_account", "what_song", "meaning_of_life",
    "restaurant_reservation", "traffic", "make_call", "text", "bill_balance", "improve_credit_score",
    "change_language", "no", "measurement_conversion", "timer", "flip_coin", "do_you_have_pets", "balance",
    "tell_joke", "last_maintenance", "exchange_rate", "uber", "car_rental", "credit_limit", "oos",
    "shopping_list", "expiration_date", "routing", "meal_suggestion", "tire_change", "todo_list",
    "card_declined", "rewards_balance", "change_accent", "vaccines", "reminder_update", "food_last",
    "change_ai_name", "bill_due", "who_do_you_work_for", "share_location", "international_visa", "calendar",
    "translate", "carry_on", "book_flight", "insurance_change", "todo_list_update", "timezone",
    "cancel_reservation", "transactions", "credit_score", "report_fraud", "spending_history", "directions",
    "spelling", "insurance", "what_is_your_name", "reminder", "where_are_you_from", "distance", "payday",
    "flight_status", "find_phone", "greeting", "alarm", "order_status", "confirm_reservation", "cook_time",
    "damaged_card", "reset_settings", "pin_change", "replacement_card_duration", "new_card", "roll_dice",
    "income", "taxes", "date", "who_made_you", "pto_request", "tire_pressure", "how_old_are_you",
    "rollover_401k", "pto_request_status", "how_busy", "application_status", "recipe", "calendar_update",
    "play_music", "yes", "direct_deposit", "credit_limit_change", "gas", "pay_bill", "ingredients_list",
    "lost_luggage", "goodbye", "what_can_i_ask_you", "book_hotel", "are_you_a_bot", "next_song",
    "change_speed", "plug_type", "maybe", "w2", "oil_change_when", "thank_you", "shopping_list_update",
    "pto_balance", "order_checks", "travel_alert", "fun_fact", "sync_device", "schedule_maintenance", "apr",
    "transfer", "ingredient_substitution", "calories", "current_location", "international_fees",
    "calculator", "definition", "next_holiday", "update_playlist", "mpg", "min_payment", "change_user_name",
    "restaurant_suggestion", "travel_notification", "cancel", "pto_used", "travel_suggestion",
    "change_volume",
)  # fmt: skip
INTENTS = tuple(name for name in HUB_INTENTS if name != OUT_OF_SCOPE)


@register_task(
    SOURCE,
    name="clinc150",
    version=1,
    label_names=INTENTS,
    notes="Hub task; in-scope train/validation/test kept (15,000 / 3,000 / 4,500 upstream); "
    "out-of-scope rows in oos_train / oos_validation / oos_test (250 / 100 / 1,000).",
)
def read() -> dict[str, pd.DataFrame]:
    splits = {}
    for split, frame in hub_frames(SOURCE, "text", "intent", HUB_INTENTS).items():
        oos = frame["label"] == OUT_OF_SCOPE
        splits[split] = frame[~oos]
        splits[f"oos_{split}"] = frame[oos].assign(label=None)
    return splits
