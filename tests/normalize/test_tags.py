"""normalize_tags, field by field against the sandbox's tags, and every rule that rejects one."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.normalize.entity_cases import (
    MISSING,
    check_shared_rules,
    normalize,
    one_row,
    reasons,
    sandbox_records,
    with_,
)

TAG = {
    "id": "12", "name": "VIP Customer", "description": "High-value customers", "category": {"id": "3"},
    "create_time": "2024-01-10T08:00:00Z", "update_time": "2024-03-15T10:30:00.123+02:00",
}


def test_sandbox_tags_field_by_field() -> None:
    records = sandbox_records("tags")
    result = normalize("tags", records)
    assert result.rejected == []
    for record, row in zip(records, result.frame.iter_rows(named=True), strict=True):
        assert row["keap_id"] == record["id"]
        assert row["name"] == record["name"]
        assert row["description"] == record.get("description")
        assert row["keap_category_id"] == (record.get("category") or {}).get("id")
        assert row["keap_updated_at"] == datetime.fromisoformat(record["update_time"])
    assert result.frame["keap_category_id"].null_count() > 0, "the sandbox has tags without a category"


def test_spec_tag() -> None:
    row = one_row("tags", TAG)
    assert row == {
        "ordinal": 0, "keap_id": "12", "name": "VIP Customer", "description": "High-value customers",
        "keap_category_id": "3", "keap_updated_at": datetime(2024, 3, 15, 8, 30, 0, 123000, tzinfo=UTC),
        "content_hash": row["content_hash"],
    }
    assert one_row("tags", with_(TAG, "category", MISSING))["keap_category_id"] is None
    assert one_row("tags", with_(TAG, "category", None))["keap_category_id"] is None
    assert one_row("tags", with_(TAG, "category.id", 3))["keap_category_id"] == "3"
    assert one_row("tags", with_(TAG, "description", "x" * 100_000))["description"] == "x" * 100_000  # text: no limit


def test_content_hash_covers_name_description_and_category() -> None:
    base = one_row("tags", TAG)["content_hash"]
    for path, value in (("name", "Other"), ("description", MISSING), ("category.id", "4")):
        assert one_row("tags", with_(TAG, path, value))["content_hash"] != base, path


def test_rejections() -> None:
    reasons("tags", TAG, [
        ("name", MISSING, "name", "name is missing"),
        ("name", None, "name", "name is missing"),
        ("category", "3", "category", "must be an object"),
        ("category.id", MISSING, "category.id", "category.id is missing"),
        ("category.id", "x3", "category.id", "not a string of digits"),
        ("category.id", "1" * 256, "category.id", "varchar(255)"),
        ("update_time", MISSING, "update_time", "the sync cursor needs it"),
        ("update_time", "2024-03-15", "update_time", "ISO-8601"),
        ("update_time", "2024-03-15T10:30:00", "update_time", "ISO-8601"),
        ("update_time", "2024-02-30T10:30:00Z", "update_time", "not a valid date-time"),
        ("update_time", 1710498600, "update_time", "must be an ISO-8601 string"),
    ])


def test_shared_rules() -> None:
    check_shared_rules("tags", TAG, [("name", "name"), ("description", "description")])
