"""Keap orders (listOrders, OrderV2) -> the stage_orders frame, plus the records that cannot be loaded and why.

- keap_id: ``id``. keap_contact_id: ``contact.id`` (digits); no ``contact`` is NULL (the SQL
  links contact_id from it, now or when the contact arrives).
- order_number: ``invoice_number`` (OrderV2 has no order number; the invoice number is the number
  a person sees), a string of at most 255 characters as Keap sent it; absent is NULL. It is
  unique in sync_orders: two orders with one number are refused by PostgreSQL (a dead letter).
- order_date: ``order_time``, required (sync_orders.order_date is NOT NULL): an order without one
  is rejected, never dated by another field (``creation_time`` is when it was entered, which an
  order_time set by hand may precede).
- total_amount / currency: the ``total`` CurrencyValue, required; its integer amount in the
  currency's smallest unit scaled exactly by the ISO 4217 minor unit (normalize.money). An
  unknown code or a non-integer amount rejects.
- status: ``status``, required, at most 50 characters (DRAFT, SENT, VIEWED, PAID), as-is.
- line_items: ``order_items`` as a canonical JSON array (keys sorted, every field and amount as
  Keap sent it: CurrencyValues stay in the smallest unit); absent or null is ``[]``.
- shipping_address: ``shipping_information`` as a canonical JSON object (its address, names,
  phone, company); absent or null is NULL.
- billing_address: NULL. OrderV2 carries no billing address (the contact's is on the contact).
- keap_updated_at: ``modification_time``, required (the sync cursor needs it).

docs/schema.md ("How Keap's fields become staging columns") lists the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from keap_pipeline.entities import ORDERS
from keap_pipeline.normalize.fields import (
    id_text,
    instant_us,
    json_array,
    json_object,
    obj,
    required_text,
    text,
)
from keap_pipeline.normalize.frame import RowNormalizer, record_id
from keap_pipeline.normalize.money import currency_value
from keap_pipeline.normalize.result import NormalizeResult

_LIMITS = ORDERS.column_limits


def _contact_id(record: dict[str, Any]) -> str | None:
    contact = obj(record.get("contact"), "contact")
    if contact is None:
        return None
    return id_text(contact.get("id"), "contact.id", "keap_contact_id", _LIMITS["keap_contact_id"])


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    keap_id = record_id(record, _LIMITS["keap_id"])
    get = record.get
    total, currency = currency_value(get("total"), "total", required=True)
    return (
        ordinal,
        keap_id,
        _contact_id(record),
        text(get("invoice_number"), "invoice_number", "order_number", _LIMITS["order_number"]),
        instant_us(get("order_time"), "order_time", required=True, why="order_date cannot be empty"),
        total,
        currency,
        required_text(get("status"), "status", "status", _LIMITS["status"]),
        json_array(get("order_items"), "order_items"),
        json_object(get("shipping_information"), "shipping_information"),
        None,  # billing_address: OrderV2 has none
        instant_us(get("modification_time"), "modification_time", required=True),
    )


_NORMALIZER = RowNormalizer(
    ORDERS,
    _row,
    {
        "keap_id": "id",
        "keap_contact_id": "contact.id",
        "order_number": "invoice_number",
        "currency": "total.currency_code",
        "status": "status",
        "line_items": "order_items",
        "shipping_address": "shipping_information",
        "billing_address": "billing_address",
    },
)


def normalize_orders(records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Turn one batch of Keap orders into stage_orders rows and rejections (one of either per record).

    Args:
        records: the orders as decoded from Keap's JSON, in the order Keap returned them.
        fetched_at: when the batch was fetched; must carry a time zone.

    Returns:
        The frame (exactly ORDERS' staging columns) and the rejected records in input order.

    Raises:
        NaiveFetchedAtError: fetched_at has no time zone.
        BatchTooLargeError: more records than an Int32 ordinal can number.
    """
    return _NORMALIZER(records, fetched_at=fetched_at)
