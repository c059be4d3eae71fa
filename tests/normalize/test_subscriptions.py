"""normalize_subscriptions, field by field against the sandbox's subscriptions, and every rule that rejects one."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from tests.normalize.entity_cases import (
    MISSING,
    check_shared_rules,
    normalize,
    one_row,
    reasons,
    sandbox_records,
    with_,
)

SUBSCRIPTION = {
    "id": "123", "quantity": 1, "active": True, "contact_id": "456", "product_id": "789",
    "subscription_plan_id": "101", "billing_amount": 49.99, "auto_charge": True, "billing_frequency": 1,
    "billing_cycle": "MONTH", "start_date": "2024-05-21", "next_bill_date": "2024-06-21", "end_date": "2025-05-21",
    "modification_time": "2025-06-15T10:30:00Z",
}


def test_sandbox_subscriptions_field_by_field() -> None:
    records = sandbox_records("subscriptions")
    result = normalize("subscriptions", records)
    assert result.rejected == []
    for record, row in zip(records, result.frame.iter_rows(named=True), strict=True):
        assert row["keap_id"] == record["id"]
        assert row["keap_contact_id"] == record["contact_id"]
        assert row["keap_product_id"] == record.get("product_id")
        assert row["keap_subscription_plan_id"] == record.get("subscription_plan_id")
        assert row["status"] == ("active" if record["active"] else "inactive")
        for column in ("start_date", "end_date", "next_bill_date"):
            assert row[column] == (date.fromisoformat(record[column]) if column in record else None)
        assert row["billing_cycle"] == record["billing_cycle"]
        assert row["billing_frequency"] == record["billing_frequency"]
        assert row["amount"] == Decimal(repr(record["billing_amount"]))
        assert row["keap_updated_at"] == datetime.fromisoformat(record["modification_time"])
    assert set(result.frame["status"]) == {"active", "inactive"}


def test_spec_subscription() -> None:
    row = one_row("subscriptions", SUBSCRIPTION)
    assert row["amount"] == Decimal("49.99") and row["start_date"] == date(2024, 5, 21)
    assert (row["keap_contact_id"], row["keap_product_id"], row["keap_subscription_plan_id"]) == ("456", "789", "101")
    assert one_row("subscriptions", with_(SUBSCRIPTION, "active", False))["status"] == "inactive"
    assert one_row("subscriptions", with_(SUBSCRIPTION, "billing_amount", 10000))["amount"] == Decimal(10000)
    assert one_row("subscriptions", with_(SUBSCRIPTION, "billing_amount", Decimal("12.5000")))["amount"] == Decimal("12.5")
    assert one_row("subscriptions", with_(SUBSCRIPTION, "billing_frequency", 2**31 - 1))["billing_frequency"] == 2**31 - 1
    for path in ("product_id", "subscription_plan_id", "start_date", "end_date", "next_bill_date", "billing_cycle",
                 "billing_frequency", "billing_amount", "contact_id"):
        assert one_row("subscriptions", with_(SUBSCRIPTION, path, MISSING))[_column(path)] is None, path
    same_day = with_(SUBSCRIPTION, "end_date", "2024-05-21")
    assert one_row("subscriptions", same_day)["end_date"] == date(2024, 5, 21)


def _column(path: str) -> str:
    return {"product_id": "keap_product_id", "subscription_plan_id": "keap_subscription_plan_id",
            "contact_id": "keap_contact_id", "billing_amount": "amount"}.get(path, path)


def test_content_hash() -> None:
    base = one_row("subscriptions", SUBSCRIPTION)["content_hash"]
    for path, value in (("active", False), ("billing_amount", 49.98), ("start_date", "2024-05-20"),
                        ("next_bill_date", MISSING), ("billing_cycle", "YEAR"), ("billing_frequency", 2),
                        ("product_id", "790"), ("contact_id", "457")):
        assert one_row("subscriptions", with_(SUBSCRIPTION, path, value))["content_hash"] != base, path
    assert one_row("subscriptions", with_(SUBSCRIPTION, "billing_amount", 49.990))["content_hash"] == base


def test_rejections() -> None:
    reasons("subscriptions", SUBSCRIPTION, [
        ("active", MISSING, "active", "active is missing"),
        ("active", None, "active", "active is missing"),
        ("active", "true", "active", "true or false"),
        ("active", 1, "active", "true or false"),
        ("start_date", "2024-05-21T00:00:00Z", "start_date", "YYYY-MM-DD"),
        ("start_date", "21/05/2024", "start_date", "YYYY-MM-DD"),
        ("next_bill_date", "2024-02-30", "next_bill_date", "real calendar date"),
        ("end_date", "2024-05-20", "end_date", "before start_date"),
        ("end_date", 20250521, "end_date", "YYYY-MM-DD"),
        ("billing_frequency", 2**31, "billing_frequency", "integer range"),
        ("billing_frequency", 1.5, "billing_frequency", "must be an integer"),
        ("billing_frequency", "1", "billing_frequency", "must be an integer"),
        ("billing_amount", 49.999999, "billing_amount", "more than 4 decimals"),
        ("billing_amount", 1e15, "billing_amount", "numeric(19,4)"),
        ("billing_amount", 1234567890123.4567, "billing_amount", "significant digits"),
        ("billing_amount", Decimal("0.00001"), "billing_amount", "more than 4 decimals"),
        ("billing_amount", "49.99", "billing_amount", "must be a number"),
        ("billing_amount", float("inf"), "billing_amount", "finite"),
        ("billing_cycle", "M" * 51, "billing_cycle", "varchar(50)"),
        ("contact_id", "x", "contact_id", "not a string of digits"),
        ("product_id", -1, "product_id", "negative"),
        ("subscription_plan_id", "1" * 256, "subscription_plan_id", "varchar(255)"),
        ("modification_time", MISSING, "modification_time", "keap_updated_at cannot be empty"),
        ("modification_time", "2025-06-15T10:30:00", "modification_time", "ISO-8601"),
    ])


def test_shared_rules() -> None:
    check_shared_rules("subscriptions", SUBSCRIPTION, [("billing_cycle", "billing_cycle")])
