"""normalize_products, field by field against the sandbox's products, and every rule that rejects one."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from keap_pipeline.sandbox import pools
from tests.normalize.entity_cases import (
    MISSING,
    check_shared_rules,
    normalize,
    one_row,
    reasons,
    sandbox_records,
    with_,
)

PRODUCT = {
    "id": "1", "name": "Premium Widget", "sku": "PROD-001", "description": "A high-quality widget",
    "short_description": "Premium widget", "active": True, "shippable": True, "weight": 2.5,
    "price": {"amount": 10000, "currency_code": "USD", "formatted_amount": "$100.00"},
    "subscription_plans": [], "create_time": "2024-01-10T08:00:00.000Z", "update_time": "2024-03-15T10:30:00.000Z",
}


def test_sandbox_products_field_by_field() -> None:
    digits = {code: d for code, d, _ in pools.CURRENCIES}
    records = sandbox_records("products")
    result = normalize("products", records)
    assert result.rejected == []
    for record, row in zip(records, result.frame.iter_rows(named=True), strict=True):
        price = record["price"]
        assert row["keap_id"] == record["id"] and row["name"] == record["name"] and row["sku"] == record["sku"]
        assert row["description"] == record.get("description")
        assert row["currency"] == price["currency_code"]
        # to the minor unit: the stored price times 10^digits is Keap's integer amount
        assert row["price"] * 10 ** digits[row["currency"]] == price["amount"]
        assert row["active"] is record["active"]
        assert row["keap_updated_at"] == datetime.fromisoformat(record["update_time"])


def test_price_in_minor_units() -> None:
    for amount, code, expected in ((1999, "USD", "19.99"), (1500, "JPY", "1500"), (12345, "KWD", "12.345"),
                                   (12345, "CLF", "1.2345"), (0, "EUR", "0")):
        row = one_row("products", with_(PRODUCT, "price", {"amount": amount, "currency_code": code}))
        assert (row["price"], row["currency"]) == (Decimal(expected), code)


def test_optional_fields() -> None:
    for price in (MISSING, None):
        row = one_row("products", with_(PRODUCT, "price", price))
        assert row["price"] is None and row["currency"] is None
    assert one_row("products", with_(PRODUCT, "sku", ""))["sku"] == "", "an empty SKU stays empty, not NULL"
    assert one_row("products", with_(PRODUCT, "active", MISSING))["active"] is None
    assert one_row("products", with_(PRODUCT, "active", False))["active"] is False
    assert one_row("products", with_(PRODUCT, "description", MISSING))["description"] is None


def test_content_hash_covers_every_stored_field() -> None:
    base = one_row("products", PRODUCT)["content_hash"]
    for path, value in (("name", "x"), ("sku", "x"), ("description", "x"), ("active", False),
                        ("price.amount", 10001), ("price.currency_code", "EUR"), ("price", MISSING)):
        assert one_row("products", with_(PRODUCT, path, value))["content_hash"] != base, path
    assert one_row("products", with_(PRODUCT, "weight", 3.0))["content_hash"] == base, "weight is not stored"


def test_rejections() -> None:
    reasons("products", PRODUCT, [
        ("name", MISSING, "name", "name is missing"),
        ("price", "100", "price", "CurrencyValue object"),
        ("price.currency_code", "ZZZ", "price.currency_code", "not an ISO 4217 currency"),
        ("price.currency_code", MISSING, "price.currency_code", "missing"),
        ("price.amount", 99.5, "price.amount", "must be an integer"),
        ("price.amount", MISSING, "price.amount", "missing"),
        ("price.amount", 10**18, "price.amount", "numeric(19,4)"),
        ("active", "yes", "active", "true or false"),
        ("active", 1, "active", "true or false"),
        ("update_time", MISSING, "update_time", "keap_updated_at cannot be empty"),
        ("update_time", "2024-03-15T10:30:00.1234567Z", "update_time", "finer than a microsecond"),
    ])


def test_shared_rules() -> None:
    check_shared_rules("products", PRODUCT, [("name", "name"), ("sku", "sku"), ("description", "description")])
