"""Table-driven tests of normalize_contacts on records shaped like the spec's Contact schema."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest

from keap_pipeline.entities import CONTACTS, ENTITIES, CursorKind
from keap_pipeline.normalize import contacts as contacts_module
from keap_pipeline.normalize.contacts import CONTACT_SCHEMA, normalize_contacts
from keap_pipeline.normalize.errors import NaiveFetchedAtError

FETCHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def contact(**overrides: Any) -> dict[str, Any]:
    """A realistic Keap contact (listContacts with our `fields`), with overrides; None deletes."""
    record: dict[str, Any] = {
        "id": "1001",
        "given_name": "John",
        "family_name": "Smith",
        "email_addresses": [
            {"email": "john.smith@example.com", "field": "EMAIL1", "is_opt_in": True},
        ],
        "phone_numbers": [{"number": "5551234567", "type": "Work", "field": "PHONE1"}],
        "company": {"id": "100", "company_name": "Thryv"},
        "tag_ids": ["123", "45"],
        "custom_fields": [{"id": "7", "content": "Gold"}],
        "create_time": "2024-01-10T08:00:00Z",
        "update_time": "2024-03-15T10:30:00Z",
    }
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def one_row(record: dict[str, Any]) -> dict[str, Any]:
    result = normalize_contacts([record], fetched_at=FETCHED)
    assert result.rejected == [], result.rejected
    assert result.frame.height == 1
    return result.frame.row(0, named=True)


def us(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


LOADS = [
    (
        "normal contact",
        contact(),
        {
            "ordinal": 0,
            "keap_id": "1001",
            "email": "john.smith@example.com",
            "first_name": "John",
            "last_name": "Smith",
            "phone": "5551234567",
            "company": "Thryv",
            "tags": '["123","45"]',
            "custom_fields": '{"7":"Gold"}',
            "keap_created_at": us("2024-01-10T08:00:00+00:00"),
            "keap_updated_at": us("2024-03-15T10:30:00+00:00"),
        },
    ),
    (
        "no email at all is a normal contact",
        contact(email_addresses=None),
        {"email": None, "phone": "5551234567"},
    ),
    ("empty email list", contact(email_addresses=[]), {"email": None}),
    (
        "EMAIL2 only",
        contact(email_addresses=[{"email": "two@example.com", "field": "EMAIL2"}]),
        {"email": "two@example.com"},
    ),
    (
        "EMAIL1 not first",
        contact(
            email_addresses=[
                {"email": "three@example.com", "field": "EMAIL3"},
                {"email": "two@example.com", "field": "EMAIL2"},
                {"email": "one@example.com", "field": "EMAIL1"},
            ]
        ),
        {"email": "one@example.com"},
    ),
    (
        "phone with extension",
        contact(
            phone_numbers=[
                {"number": "555 0000", "field": "PHONE2"},
                {"number": "+44 20 7946 0958", "extension": "12", "field": "PHONE1"},
            ]
        ),
        {"phone": "+44 20 7946 0958;ext=12"},
    ),
    (
        "phone without PHONE1 takes the first",
        contact(phone_numbers=[{"number": "+81 3-1234-5678", "field": "PHONE3", "extension": ""}]),
        {"phone": "+81 3-1234-5678"},
    ),
    (
        "non-ASCII and emoji",
        contact(
            given_name="Zoë 🎉",
            family_name="Nguyễn-王",
            company={"company_name": "Société Générale ☕"},
            email_addresses=[{"email": "zoë@exämple.com", "field": "EMAIL1"}],
            custom_fields=[{"id": "7", "content": "naïve — ✓"}],
        ),
        {
            "first_name": "Zoë 🎉",
            "last_name": "Nguyễn-王",
            "company": "Société Générale ☕",
            "email": "zoë@exämple.com",
            "custom_fields": '{"7":"naïve — ✓"}',
        },
    ),
    (
        "custom fields of every JSON type, nested and null",
        contact(
            custom_fields=[
                {"id": "10", "content": "text"},
                {"id": "11", "content": 42},
                {"id": "12", "content": 3.25},
                {"id": "13", "content": True},
                {"id": "14", "content": None},
                {"id": "15", "content": [1, "a", None, {"z": 1, "a": [False]}]},
                {"id": "16", "content": {"b": {"d": 1, "c": 2}, "a": None}},
                {"id": "17"},
                {"id": "9", "content": 12345678901234567890},
            ]
        ),
        {
            "custom_fields": '{"10":"text","11":42,"12":3.25,"13":true,"14":null,'
            '"15":[1,"a",null,{"a":[false],"z":1}],"16":{"a":null,"b":{"c":2,"d":1}},'
            '"17":null,"9":12345678901234567890}'
        },
    ),
    (
        "ids as JSON integers",
        contact(
            id=1001,
            tag_ids=[123, "45"],
            custom_fields=[{"id": 7, "content": "Gold"}],
        ),
        {"keap_id": "1001", "tags": '["123","45"]', "custom_fields": '{"7":"Gold"}'},
    ),
    (
        "tags keep Keap's order; absent tags and custom fields are empty",
        contact(tag_ids=["9", "10", "1"], custom_fields=None),
        {"tags": '["9","10","1"]', "custom_fields": "{}"},
    ),
    ("absent tag_ids", contact(tag_ids=None), {"tags": "[]"}),
    (
        "no company, names or create_time",
        contact(company=None, given_name=None, family_name=None, create_time=None),
        {"company": None, "first_name": None, "last_name": None, "keap_created_at": None},
    ),
    (
        "offsets and fractions",
        contact(
            create_time="2024-01-10T08:00:00.5+05:30",
            update_time="2024-03-15T10:30:00.123456000-04:00",
        ),
        {
            "keap_created_at": us("2024-01-10T02:30:00.500000+00:00"),
            "keap_updated_at": us("2024-03-15T14:30:00.123456+00:00"),
        },
    ),
    (
        "values exactly at the column limits load",
        contact(
            given_name="x" * 255,
            phone_numbers=[{"number": "1" * 43, "extension": "12", "field": "PHONE1"}],
        ),
        {"first_name": "x" * 255, "phone": "1" * 43 + ";ext=12"},
    ),
    (
        "a backslash-u0000 text is not a NUL",
        contact(custom_fields=[{"id": "7", "content": "C:\\u0000"}]),
        {"custom_fields": '{"7":"C:\\\\u0000"}'},
    ),
]


@pytest.mark.parametrize(("record", "expected"), [c[1:] for c in LOADS], ids=[c[0] for c in LOADS])
def test_loads(record: dict[str, Any], expected: dict[str, Any]) -> None:
    row = one_row(record)
    for column, value in expected.items():
        assert row[column] == value, column
    # stored JSON is valid JSON and round-trips
    assert isinstance(json.loads(row["tags"]), list)
    assert isinstance(json.loads(row["custom_fields"]), dict)


REJECTS = [
    ("missing id", contact(id=None), "id", "id is missing"),
    ("non-digit id", contact(id="abc"), "id", "not a string of digits"),
    ("non-ASCII digit id", contact(id="١٢"), "id", "not a string of digits"),
    ("negative int id", contact(id=-5), "id", "negative"),
    ("boolean id", contact(id=True), "id", "got a JSON boolean"),
    ("id too long", contact(id="1" * 256), "id", "varchar(255)"),
    ("missing update_time", contact(update_time=None), "update_time", "cursor needs it"),
    ("naive update_time", contact(update_time="2024-03-15T10:30:00"), "update_time", "with a zone"),
    ("date-only update_time", contact(update_time="2024-03-15"), "update_time", "with a zone"),
    (
        "impossible date",
        contact(update_time="2024-02-30T10:30:00Z"),
        "update_time",
        "day is out of range",
    ),
    ("leap second", contact(update_time="2024-03-15T10:30:60Z"), "update_time", "second"),
    (
        "sub-microsecond fraction",
        contact(update_time="2024-03-15T10:30:00.1234567Z"),
        "update_time",
        "finer than a microsecond",
    ),
    ("numeric update_time", contact(update_time=1710498600), "update_time", "ISO-8601 string"),
    ("bad create_time", contact(create_time="yesterday"), "create_time", "ISO-8601"),
    (
        "email too long",
        contact(email_addresses=[{"email": "a" * 250 + "@x.com", "field": "EMAIL1"}]),
        "email_addresses[0].email",
        "256 characters, longer than the column limit email varchar(255)",
    ),
    ("first name too long", contact(given_name="x" * 256), "given_name", "first_name varchar(255)"),
    ("last name too long", contact(family_name="y" * 300), "family_name", "last_name varchar(255)"),
    (
        "company too long",
        contact(company={"company_name": "c" * 256}),
        "company.company_name",
        "company varchar(255)",
    ),
    (
        "phone with extension too long",
        contact(phone_numbers=[{"number": "1" * 44, "extension": "12", "field": "PHONE1"}]),
        "phone_numbers[0] (number;ext=extension)",
        "phone varchar(50)",
    ),
    ("NUL in a name", contact(given_name="Jo\x00hn"), "given_name", "NUL"),
    (
        "NUL in an email",
        contact(email_addresses=[{"email": "a\x00@x.com", "field": "EMAIL1"}]),
        "email_addresses[0].email",
        "NUL",
    ),
    (
        "NUL nested in a custom field",
        contact(custom_fields=[{"id": "7", "content": {"k": ["ok", "b\x00d"]}}]),
        "custom_fields",
        "NUL",
    ),
    (
        "NUL in a custom field key",
        contact(custom_fields=[{"id": "7", "content": {"\x00": 1}}]),
        "custom_fields",
        "NUL",
    ),
    (
        "NaN custom field",
        contact(custom_fields=[{"id": "7", "content": float("nan")}]),
        "custom_fields",
        "NaN",
    ),
    (
        "Infinity custom field",
        contact(custom_fields=[{"id": "7", "content": float("inf")}]),
        "custom_fields",
        "Infinity",
    ),
    (
        "duplicate custom field id",
        contact(custom_fields=[{"id": "7", "content": 1}, {"id": 7, "content": 2}]),
        "custom_fields[1].id",
        "appears twice",
    ),
    (
        "custom field without id",
        contact(custom_fields=[{"content": 1}]),
        "custom_fields[0].id",
        "missing",
    ),
    (
        "email_addresses not a list",
        contact(email_addresses={"email": "a@b.c"}),
        "email_addresses",
        "must be an array",
    ),
    (
        "email entry not an object",
        contact(email_addresses=["a@b.c"]),
        "email_addresses[0]",
        "must be an object",
    ),
    (
        "email not a string",
        contact(email_addresses=[{"email": 5, "field": "EMAIL1"}]),
        "email_addresses[0].email",
        "must be a string",
    ),
    ("phone_numbers not a list", contact(phone_numbers="555"), "phone_numbers", "must be an array"),
    (
        "phone extension not a string",
        contact(phone_numbers=[{"number": "555", "extension": 12}]),
        "phone_numbers[0].extension",
        "must be a string",
    ),
    ("company not an object", contact(company="Thryv"), "company", "must be an object"),
    ("given_name not a string", contact(given_name=["John"]), "given_name", "got a JSON array"),
    ("tag_ids not a list", contact(tag_ids="1,2"), "tag_ids", "must be an array"),
    ("tag id not digits", contact(tag_ids=["1", "vip"]), "tag_ids[1]", "not a string of digits"),
    (
        "custom_fields not a list",
        contact(custom_fields={"7": "Gold"}),
        "custom_fields",
        "must be an array",
    ),
    ("lone surrogate", contact(family_name="Sm\ud800th"), "family_name", "lone surrogate"),
]


@pytest.mark.parametrize(
    ("record", "field", "reason_part"), [c[1:] for c in REJECTS], ids=[c[0] for c in REJECTS]
)
def test_rejects(record: dict[str, Any], field: str, reason_part: str) -> None:
    original = copy.deepcopy(record)
    result = normalize_contacts([contact(id="1"), record, contact(id="3")], fetched_at=FETCHED)
    assert result.frame["ordinal"].to_list() == [0, 2]
    assert result.frame["keap_id"].to_list() == ["1", "3"]
    assert len(result.rejected) == 1
    rejected = result.rejected[0]
    assert rejected.field == field
    assert reason_part in rejected.reason
    assert rejected.record is record  # the raw record itself, untouched
    if field != "custom_fields" or "NaN" not in reason_part:  # NaN != NaN
        assert record == original
    assert rejected.keap_id == (record["id"] if field != "id" else None)


def test_not_an_object_is_rejected() -> None:
    result = normalize_contacts(["1001", None, contact()], fetched_at=FETCHED)
    assert [r.reason for r in result.rejected] == [
        "the record must be a JSON object, got a JSON string",
        "the record must be a JSON object, got a JSON null",
    ]
    assert result.frame["ordinal"].to_list() == [2]


def test_rejected_repr_hides_the_record() -> None:
    result = normalize_contacts([contact(id="x", given_name="Secret Person")], fetched_at=FETCHED)
    assert "Secret" not in repr(result.rejected[0])


def test_canonical_json_ignores_key_order() -> None:
    a = contact(
        custom_fields=[
            {"id": "2", "content": {"x": 1, "y": [1, {"b": 2, "a": 1}]}},
            {"id": "1", "content": "v"},
        ]
    )
    b = {k: a[k] for k in reversed(list(a))}
    b["custom_fields"] = [
        {"content": "v", "id": "1"},
        {"content": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "id": "2"},
    ]
    ra, rb = one_row(a), one_row(b)
    assert ra == rb
    assert ra["custom_fields"] == '{"1":"v","2":{"x":1,"y":[1,{"a":1,"b":2}]}}'


def test_fast_encoder_matches_json_module() -> None:
    values = {"10": [1, 2.5, None, True, 'é\n"', {"b": 1, "a": {}}], "2": -0.0, "3": 10**30}
    expected = json.dumps(
        values, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
    )
    assert contacts_module._canonical_json(values) == expected
    assert contacts_module._CANONICAL.encode(values) == expected


def test_output_schema_is_exactly_the_staging_schema() -> None:
    for records in ([], [contact()], [contact(id="x")]):
        frame = normalize_contacts(records, fetched_at=FETCHED).frame
        assert frame.schema == CONTACT_SCHEMA
    assert list(CONTACT_SCHEMA.names()) == list(CONTACTS.staging_column_names)
    assert dict(CONTACT_SCHEMA) == {
        "ordinal": pl.Int32,
        "keap_id": pl.Utf8,
        "email": pl.Utf8,
        "first_name": pl.Utf8,
        "last_name": pl.Utf8,
        "phone": pl.Utf8,
        "company": pl.Utf8,
        "tags": pl.Utf8,
        "custom_fields": pl.Utf8,
        "keap_created_at": pl.Datetime("us", "UTC"),
        "keap_updated_at": pl.Datetime("us", "UTC"),
        "content_hash": pl.Utf8,
    }


def test_content_hash_changes_with_content_only() -> None:
    base = normalize_contacts([contact()], fetched_at=FETCHED).frame
    again = normalize_contacts([contact()], fetched_at=FETCHED).frame
    assert base["content_hash"][0] == again["content_hash"][0]
    assert len(base["content_hash"][0]) == 32
    resaved = normalize_contacts([contact(update_time="2031-01-01T00:00:00.000Z")], fetched_at=FETCHED).frame
    assert resaved["content_hash"][0] == base["content_hash"][0], "a re-save without changes is unchanged"
    for changed in (
        contact(given_name="Other"),
        contact(family_name=None),
        contact(tag_ids=["999"]),
        contact(email_addresses=[]),
        contact(create_time="2020-01-01T00:00:00.000Z"),
    ):
        frame = normalize_contacts([changed], fetched_at=FETCHED).frame
        assert frame["content_hash"][0] != base["content_hash"][0], changed


def test_fetched_at_must_be_aware() -> None:
    with pytest.raises(NaiveFetchedAtError):
        normalize_contacts([contact()], fetched_at=datetime(2026, 1, 1))
    result = normalize_contacts(
        [contact()], fetched_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    )
    assert result.fetched_at is not None


def test_big_batch_keeps_order_and_counts() -> None:
    records = []
    for i in range(10_000):
        if i % 997 == 0:
            records.append(contact(id=str(i), update_time="not a time"))
        elif i % 1009 == 0:
            records.append(contact(id=str(i), given_name="\ud83d"))  # lone surrogate: slow path
        else:
            records.append(
                contact(
                    id=str(i) if i % 2 else i,
                    email_addresses=None
                    if i % 3 == 0
                    else [{"email": f"u{i}@example.com", "field": "EMAIL1"}],
                )
            )
    result = normalize_contacts(records, fetched_at=FETCHED)
    assert result.frame.height + len(result.rejected) == len(records)
    bad = {i for i in range(10_000) if i % 997 == 0 or (i % 1009 == 0 and i % 997 != 0)}
    assert [int(r.keap_id) for r in result.rejected] == sorted(bad)
    ordinals = result.frame["ordinal"].to_list()
    assert ordinals == [i for i in range(10_000) if i not in bad]
    assert result.frame["keap_id"].to_list() == [str(i) for i in ordinals]
    assert result.frame["email"].null_count() == sum(1 for i in ordinals if i % 3 == 0)


def test_entities_table() -> None:
    assert set(ENTITIES) == {"contacts", "tags", "orders", "subscriptions", "products"}
    assert CONTACTS.resolve_normalizer() is normalize_contacts
    assert dict(CONTACTS.column_limits) == {
        "keap_id": 255,
        "email": 255,
        "first_name": 255,
        "last_name": 255,
        "phone": 50,
        "company": 255,
    }
    assert CONTACTS.cursor is CursorKind.TIME
    assert (CONTACTS.endpoint.since_filter, CONTACTS.endpoint.until_filter) == (
        "start_update_time",
        "end_update_time",
    )
    assert CONTACTS.order_by == "update_time asc"


def test_entities_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, keap_pipeline.entities; "
        "print(sorted(m for m in ('polars','httpx','psycopg','dagster') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
