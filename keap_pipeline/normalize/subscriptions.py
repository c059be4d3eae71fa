"""Keap subscriptions (listSubscriptions) -> the stage_subscriptions frame, plus the records that cannot be loaded and why.

- keap_id: ``id``. keap_contact_id / keap_product_id / keap_subscription_plan_id: ``contact_id``,
  ``product_id``, ``subscription_plan_id`` (digits); absent is NULL. The SQL links contact_id,
  product_id, product_name and currency from them (the product's name and currency: a
  subscription carries neither).
- status: ``'active'`` or ``'inactive'`` from the boolean ``active``, which is required: a
  subscription whose state is unknown is rejected, never guessed.
- start_date / end_date / next_bill_date: the spec's ``format: date`` (YYYY-MM-DD, strictly);
  absent is NULL. An end_date before the start_date is rejected (sync_subscriptions refuses it).
- billing_cycle: ``billing_cycle`` as-is (YEAR, MONTH, WEEK, DAY), at most 50 characters.
- billing_frequency: ``billing_frequency``, an integer within int4.
- amount: ``billing_amount``, a JSON number in MAJOR units (not a CurrencyValue), exact: at most
  4 decimals and below 10^15 (numeric(19,4)); a float is taken as its shortest repr, and only
  when that has at most 15 significant digits (normalize.money.major_units).
- keap_updated_at: ``modification_time``, required (conflict detection compares it).

docs/schema.md ("How Keap's fields become staging columns") lists the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from keap_pipeline.entities import SUBSCRIPTIONS
from keap_pipeline.normalize.fields import (
    Reject,
    boolean,
    date_days,
    id_text,
    instant_us,
    int32,
    text,
)
from keap_pipeline.normalize.frame import RowNormalizer, record_id
from keap_pipeline.normalize.money import major_units
from keap_pipeline.normalize.result import NormalizeResult

_LIMITS = SUBSCRIPTIONS.column_limits
UPDATED_WHY = "keap_updated_at cannot be empty (conflict detection compares it)"


def _ref(record: dict[str, Any], field: str, column: str) -> str | None:
    return id_text(record.get(field), field, column, _LIMITS[column])


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    keap_id = record_id(record, _LIMITS["keap_id"])
    get = record.get
    active = boolean(get("active"), "active", required=True)
    start = date_days(get("start_date"), "start_date")
    end = date_days(get("end_date"), "end_date")
    if start is not None and end is not None and end < start:
        raise Reject("end_date", "end_date is before start_date")
    return (
        ordinal,
        keap_id,
        _ref(record, "contact_id", "keap_contact_id"),
        _ref(record, "product_id", "keap_product_id"),
        _ref(record, "subscription_plan_id", "keap_subscription_plan_id"),
        "active" if active else "inactive",
        start,
        end,
        date_days(get("next_bill_date"), "next_bill_date"),
        text(get("billing_cycle"), "billing_cycle", "billing_cycle", _LIMITS["billing_cycle"]),
        int32(get("billing_frequency"), "billing_frequency"),
        major_units(get("billing_amount"), "billing_amount"),
        instant_us(get("modification_time"), "modification_time", required=True, why=UPDATED_WHY),
    )


_NORMALIZER = RowNormalizer(
    SUBSCRIPTIONS,
    _row,
    {
        "keap_id": "id",
        "keap_contact_id": "contact_id",
        "keap_product_id": "product_id",
        "keap_subscription_plan_id": "subscription_plan_id",
        "status": "active",
        "billing_cycle": "billing_cycle",
    },
)


def normalize_subscriptions(records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Turn one batch of Keap subscriptions into stage_subscriptions rows and rejections (one of either per record).

    Args:
        records: the subscriptions as decoded from Keap's JSON, in the order Keap returned them.
        fetched_at: when the batch was fetched; must carry a time zone.

    Returns:
        The frame (exactly SUBSCRIPTIONS' staging columns) and the rejected records in input order.

    Raises:
        NaiveFetchedAtError: fetched_at has no time zone.
        BatchTooLargeError: more records than an Int32 ordinal can number.
    """
    return _NORMALIZER(records, fetched_at=fetched_at)
