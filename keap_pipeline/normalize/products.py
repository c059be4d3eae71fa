"""Keap products (listProducts items) -> the stage_products frame, plus the records that cannot be loaded and why.

- keap_id: ``id``. name: ``name``, required, at most 255 characters.
- sku: ``sku`` as-is, at most 255 (Keap sends ``""`` for a product without one: kept as ``""``,
  not turned into NULL).
- description: ``description`` (the long description) as-is; ``short_description`` is not stored.
- price / currency: the ``price`` CurrencyValue, its integer amount in the currency's smallest
  unit scaled exactly by the ISO 4217 minor unit (normalize.money); no ``price`` (absent or null)
  is a product without a price, both NULL; an unknown code or a non-integer amount rejects.
- active: the boolean ``active``; absent is NULL (never guessed).
- keap_updated_at: ``update_time``, required (conflict detection compares it).

docs/schema.md ("How Keap's fields become staging columns") lists the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from keap_pipeline.entities import PRODUCTS
from keap_pipeline.normalize.fields import boolean, instant_us, required_text, text
from keap_pipeline.normalize.frame import RowNormalizer, record_id
from keap_pipeline.normalize.money import currency_value
from keap_pipeline.normalize.result import NormalizeResult

_LIMITS = PRODUCTS.column_limits
UPDATED_WHY = "keap_updated_at cannot be empty (conflict detection compares it)"


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    keap_id = record_id(record, _LIMITS["keap_id"])
    get = record.get
    price, currency = currency_value(get("price"), "price", required=False)
    return (
        ordinal,
        keap_id,
        required_text(get("name"), "name", "name", _LIMITS["name"]),
        text(get("sku"), "sku", "sku", _LIMITS["sku"]),
        text(get("description"), "description", "description", None),
        price,
        currency,
        boolean(get("active"), "active", required=False),
        instant_us(get("update_time"), "update_time", required=True, why=UPDATED_WHY),
    )


_NORMALIZER = RowNormalizer(
    PRODUCTS,
    _row,
    {"keap_id": "id", "name": "name", "sku": "sku", "description": "description", "currency": "price.currency_code"},
)


def normalize_products(records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Turn one batch of Keap products into stage_products rows and rejections (one of either per record).

    Args:
        records: the products as decoded from Keap's JSON, in the order Keap returned them.
        fetched_at: when the batch was fetched; must carry a time zone.

    Returns:
        The frame (exactly PRODUCTS' staging columns) and the rejected records in input order.

    Raises:
        NaiveFetchedAtError: fetched_at has no time zone.
        BatchTooLargeError: more records than an Int32 ordinal can number.
    """
    return _NORMALIZER(records, fetched_at=fetched_at)
