"""normalize_orders, field by field against the sandbox's orders, and every rule that rejects one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from keap_pipeline.sandbox import pools
from tests.hostile import same_json
from tests.normalize.entity_cases import (
    MISSING,
    check_shared_rules,
    normalize,
    one_row,
    reasons,
    sandbox_records,
    with_,
)

ITEM = {
    "id": "456", "name": "Premium Widget", "quantity": 2, "item_type": "PRODUCT",
    "price_per_unit": {"amount": 1250, "currency_code": "USD", "formatted_amount": "$12.50"},
    "product": {"id": "123", "name": "Premium Widget", "sku": "WDG-001"},
}
ORDER = {
    "id": "123", "title": "Online Order #1234", "status": "PAID",
    "total": {"amount": 2500, "currency_code": "USD", "formatted_amount": "$25.00"},
    "contact": {"id": "456", "email": "john@example.com", "given_name": "John", "family_name": "Doe"},
    "order_time": "2024-05-21T14:30:00Z", "creation_time": "2024-05-21T14:30:00Z",
    "modification_time": "2024-05-22T09:00:00.250Z", "order_items": [ITEM], "invoice_number": "1001",
    "shipping_information": {"id": "9", "address": {"line1": "1 E Main St", "locality": "Chandler", "country_code": "USA"},
                             "given_name": "John", "family_name": "Doe"},
}


def test_sandbox_orders_field_by_field() -> None:
    digits = {code: d for code, d, _ in pools.CURRENCIES}
    records = sandbox_records("orders")
    result = normalize("orders", records)
    assert result.rejected == []
    for record, row in zip(records, result.frame.iter_rows(named=True), strict=True):
        assert row["keap_id"] == record["id"]
        assert row["keap_contact_id"] == record["contact"]["id"]
        assert row["order_number"] == record["invoice_number"]
        assert row["order_date"] == datetime.fromisoformat(record["order_time"])
        assert row["currency"] == record["total"]["currency_code"]
        assert row["total_amount"] * 10 ** digits[row["currency"]] == record["total"]["amount"]
        assert row["status"] == record["status"]
        assert json.loads(row["line_items"]) == record["order_items"]  # amounts as Keap sent them
        if "shipping_information" in record:
            assert json.loads(row["shipping_address"]) == record["shipping_information"]
        else:
            assert row["shipping_address"] is None
        assert row["billing_address"] is None
        assert row["keap_updated_at"] == datetime.fromisoformat(record["modification_time"])
    assert result.frame["shipping_address"].null_count() not in (0, len(records)), "both kinds are served"


def test_spec_order() -> None:
    row = one_row("orders", ORDER)
    assert row["total_amount"] == Decimal("25.00") and row["currency"] == "USD"
    assert row["order_date"] == datetime(2024, 5, 21, 14, 30, tzinfo=UTC)
    assert row["keap_updated_at"] == datetime(2024, 5, 22, 9, 0, 0, 250000, tzinfo=UTC)
    # canonical: keys sorted at every depth, compact, UTF-8 kept
    assert row["line_items"].startswith('[{"id":"456","item_type":"PRODUCT","name":"Premium Widget","price_per_unit":{"amount":1250,')
    assert row["shipping_address"] == json.dumps(ORDER["shipping_information"], sort_keys=True, separators=(",", ":"))


def test_totals_per_currency() -> None:
    for amount, code, expected in ((1500, "JPY", "1500"), (12345, "KWD", "12.345"), (12345, "BHD", "12.345"),
                                   (12345, "JOD", "12.345"), (123456, "CLF", "12.3456"), (-500, "USD", "-5.00")):
        row = one_row("orders", with_(ORDER, "total", {"amount": amount, "currency_code": code}))
        assert (row["total_amount"], row["currency"]) == (Decimal(expected), code)


def test_optional_fields() -> None:
    assert one_row("orders", with_(ORDER, "contact", MISSING))["keap_contact_id"] is None
    assert one_row("orders", with_(ORDER, "contact.id", 456))["keap_contact_id"] == "456"
    assert one_row("orders", with_(ORDER, "invoice_number", MISSING))["order_number"] is None
    for items in (MISSING, None, []):
        assert one_row("orders", with_(ORDER, "order_items", items))["line_items"] == "[]"
    assert one_row("orders", with_(ORDER, "shipping_information", None))["shipping_address"] is None


def test_line_items_keep_every_digit() -> None:
    items = [{"id": "1", "quantity": Decimal("2.50"), "price_per_unit": {"amount": 2**70, "currency_code": "USD"}, "note": "Zoë"}]
    row = one_row("orders", with_(ORDER, "order_items", items))
    assert row["line_items"] == '[{"id":"1","note":"Zoë","price_per_unit":{"amount":1180591620717411303424,"currency_code":"USD"},"quantity":2.50}]'
    assert same_json(json.loads(row["line_items"], parse_float=Decimal), items)


def test_content_hash() -> None:
    base = one_row("orders", ORDER)["content_hash"]
    for path, value in (("status", "SENT"), ("total.amount", 2501), ("total.currency_code", "EUR"), ("invoice_number", "1002"),
                        ("order_time", "2024-05-21T14:30:01Z"), ("order_items", []), ("shipping_information", MISSING),
                        ("contact.id", "457")):
        assert one_row("orders", with_(ORDER, path, value))["content_hash"] != base, path
    assert one_row("orders", with_(ORDER, "title", "Other"))["content_hash"] == base, "title is not stored"


def test_rejections() -> None:
    reasons("orders", ORDER, [
        ("total", MISSING, "total", "total is missing"),
        ("total", None, "total", "total is missing"),
        ("total.currency_code", "ZZZ", "total.currency_code", "not an ISO 4217 currency"),
        ("total.currency_code", "XAU", "total.currency_code", "not an ISO 4217 currency"),
        ("total.amount", 25.5, "total.amount", "must be an integer"),
        ("total.amount", "2500", "total.amount", "must be an integer"),
        ("total.amount", 10**20, "total.amount", "numeric(19,4)"),
        ("order_time", MISSING, "order_time", "order_date cannot be empty"),
        ("order_time", "2024-05-21", "order_time", "ISO-8601"),
        ("modification_time", MISSING, "modification_time", "the sync cursor needs it"),
        ("modification_time", "2024-05-21T14:30:00+25:00", "modification_time", "offset is not between"),
        ("status", MISSING, "status", "status is missing"),
        ("status", "P" * 51, "status", "varchar(50)"),
        ("contact", "456", "contact", "must be an object"),
        ("contact.id", "abc", "contact.id", "not a string of digits"),
        ("contact.id", "1" * 256, "contact.id", "varchar(255)"),
        ("invoice_number", 1001, "invoice_number", "must be a string"),
        ("order_items", {"id": "1"}, "order_items", "must be an array"),
        ("shipping_information", [], "shipping_information", "must be an object"),
    ])


def test_shared_rules() -> None:
    check_shared_rules(
        "orders", ORDER, [("status", "status"), ("invoice_number", "order_number")],
        json_fields=("order_items", "shipping_information"),
    )
