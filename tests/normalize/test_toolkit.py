"""The normalize toolkit: field rules, the frame built from the entity table, content hashes pinned, money exact."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from keap_pipeline.entities import CONTACTS, ENTITIES
from keap_pipeline.normalize import fields, money
from keap_pipeline.normalize.contacts import CONTENT_COLUMNS, normalize_contacts
from keap_pipeline.normalize.content_hash import add_content_hash
from keap_pipeline.normalize.fields import Reject
from keap_pipeline.normalize.frame import polars_type, staging_schema
from keap_pipeline.sandbox import pools

FETCHED = datetime(2026, 1, 2, tzinfo=UTC)


def test_contacts_hash_exactly_the_shared_columns() -> None:
    assert CONTACTS.hashed_columns == CONTENT_COLUMNS


# Computed with normalize/contacts.py as it was before the toolkit (main at 68ea60d): an upgrade
# must not make every stored contact look changed.
KNOWN_HASHES = [
    (
        {
            "id": "1001", "given_name": "John", "family_name": "Smith",
            "email_addresses": [{"email": "john.smith@example.com", "field": "EMAIL1"}],
            "phone_numbers": [{"number": "5551234567", "field": "PHONE1", "extension": "12"}],
            "company": {"company_name": "Thryv"}, "tag_ids": ["123", "45"],
            "custom_fields": [{"id": "7", "content": "Gold"}, {"id": "8", "content": {"b": [1, 2.5, None], "a": True}}],
            "create_time": "2024-01-10T08:00:00Z", "update_time": "2024-03-15T10:30:00.123Z",
        },
        "087a5b1db9a622a4baa0afc5a356cd4f",
    ),
    ({"id": "2", "update_time": "2024-03-15T10:30:00Z"}, "4ea2b74f2225b6bc6aadf2539f3c3987"),
    (
        {
            "id": "3", "given_name": "Zoë 🎉", "family_name": "", "tag_ids": [],
            "custom_fields": [{"id": "1", "content": None}],
            "create_time": "1999-12-31T23:59:59.999999+05:45", "update_time": "2024-03-15T10:30:00Z",
        },
        "a6968ba9c085ba0558ebd17749421b36",
    ),
]


def test_contact_hashes_did_not_change() -> None:
    result = normalize_contacts([r for r, _ in KNOWN_HASHES], fetched_at=FETCHED)
    assert result.frame["content_hash"].to_list() == [h for _, h in KNOWN_HASHES]


def _md5(*parts: str | None) -> str:
    text = "\x1f".join("\x00" if p is None else p for p in parts)
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - what add_content_hash computes


def test_hash_text_of_every_type_is_pinned() -> None:
    frame = pl.DataFrame([
        pl.Series("s", ["é", None], dtype=pl.Utf8),
        pl.Series("n", [Decimal("12.5"), None], dtype=pl.Decimal(19, 4)),
        pl.Series("d", [19000, None], dtype=pl.Int32).cast(pl.Date),
        pl.Series("t", [1_700_000_000_123_456, None], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        pl.Series("b", [False, None], dtype=pl.Boolean),
        pl.Series("i", [-7, None], dtype=pl.Int32),
    ])
    hashes = add_content_hash(frame, frame.columns)["content_hash"].to_list()
    assert hashes == [
        _md5("é", "12.5000", str(19000 * 86_400_000_000), "1700000000123456", "false", "-7"),
        _md5(None, None, None, None, None, None),
    ]


def test_schema_is_derived_from_the_staging_columns() -> None:
    for entity in ENTITIES.values():
        schema = staging_schema(entity)
        assert tuple(schema.names()) == entity.staging_column_names
        assert schema["ordinal"] == pl.Int32 and schema["content_hash"] == pl.Utf8
        assert schema["keap_updated_at"] == pl.Datetime("us", "UTC")
    orders = staging_schema(ENTITIES["orders"])
    assert orders["total_amount"] == pl.Decimal(19, 4) and orders["line_items"] == pl.Utf8
    subs = staging_schema(ENTITIES["subscriptions"])
    assert subs["start_date"] == pl.Date and subs["billing_frequency"] == pl.Int32
    assert staging_schema(ENTITIES["products"])["active"] == pl.Boolean


def test_unknown_pg_type_is_refused() -> None:
    from keap_pipeline.entities import Column

    with pytest.raises(ValueError, match="no frame type"):
        polars_type(Column("x", "point"))


def reason(call: Any) -> str:
    with pytest.raises(Reject) as info:
        call()
    return info.value.reason


def test_text_rules() -> None:
    assert fields.text("x" * 5, "f", "c", 5) == "x" * 5
    assert fields.text("\U0001f600" * 5, "f", "c", 5) == "\U0001f600" * 5  # characters, not bytes
    assert fields.text(None, "f", "c", 5) is None
    assert "longer than the column limit c varchar(5)" in reason(lambda: fields.text("x" * 6, "f", "c", 5))
    assert "NUL" in reason(lambda: fields.text("a\x00", "f", "c", 5))
    assert "got a JSON number" in reason(lambda: fields.text(5, "f", "c", 5))
    assert "f is missing" in reason(lambda: fields.required_text(None, "f", "c", 5))


def test_id_rules() -> None:
    assert fields.id_digits("007", "id") == "007"
    assert fields.id_digits(2**70, "id") == str(2**70)
    assert fields.id_text(None, "contact.id", "keap_contact_id", 255) is None
    for bad in ("", "12a", "١٢", -1, True, 1.0, [1]):
        reason(lambda bad=bad: fields.id_digits(bad, "id"))
    assert "longer than the column limit" in reason(lambda: fields.id_text("1" * 256, "contact.id", "keap_contact_id", 255))


def test_date_rules() -> None:
    assert fields.date_days("1970-01-02", "d") == 1
    assert fields.date_days("2024-02-29", "d") == (datetime(2024, 2, 29) - datetime(1970, 1, 1)).days
    for bad in ("2024-02-30", "2023-02-29", "2024-13-01"):
        assert "real calendar date" in reason(lambda bad=bad: fields.date_days(bad, "d"))
    for bad in ("20240521", "2024-W21-2", "2024-05-21T00:00:00Z", "2024-5-21", " 2024-05-21", "２０２４-05-21"):
        assert "YYYY-MM-DD" in reason(lambda bad=bad: fields.date_days(bad, "d"))
    assert "got a JSON number" in reason(lambda: fields.date_days(20240521, "d"))


def test_int32_and_boolean_rules() -> None:
    assert fields.int32(2**31 - 1, "n") == 2**31 - 1
    assert "integer range" in reason(lambda: fields.int32(2**31, "n"))
    assert "integer range" in reason(lambda: fields.int32(Decimal("1" * 5000), "n"))
    assert "must be an integer" in reason(lambda: fields.int32(1.0, "n"))
    assert "must be an integer" in reason(lambda: fields.int32(True, "n"))
    assert fields.boolean(False, "b", required=True) is False
    assert "b is missing" in reason(lambda: fields.boolean(None, "b", required=True))
    assert "true or false" in reason(lambda: fields.boolean(1, "b", required=True))


def test_json_rules() -> None:
    assert fields.json_text({"b": [Decimal("12.50")], "a": "é"}, "j") == '{"a":"é","b":[12.50]}'
    assert "NaN" in reason(lambda: fields.json_text([float("nan")], "j"))
    assert "NUL" in reason(lambda: fields.json_text({"k\x00": 1}, "j"))
    assert fields.json_text(["\\u0000"], "j") == '["\\\\u0000"]'  # a backslash, not a NUL
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert "non-JSON value" in reason(lambda: fields.json_text(deep, "j"))


# --- money ---------------------------------------------------------------------------------------

def test_minor_units_of_iso_4217() -> None:
    units = money.MINOR_UNITS
    assert (units["JPY"], units["USD"], units["BHD"], units["KWD"], units["JOD"], units["CLF"]) == (0, 2, 3, 3, 3, 4)
    assert units["UYW"] == 4 and units["KRW"] == 0 and units["TND"] == 3 and units["EUR"] == 2
    assert len(units) >= 150
    for code in ("XAU", "XAG", "XDR", "XTS", "XXX", "XSU", "XUA", "USS", "EEK", "usd", "US"):
        assert code not in units, code


def test_sandbox_currencies_agree_with_the_table() -> None:
    for code, digits, _symbol in pools.CURRENCIES:
        assert money.MINOR_UNITS[code] == digits, code


@pytest.mark.parametrize(
    ("amount", "code", "expected"),
    [
        (12345, "USD", "123.45"), (1500, "JPY", "1500"), (12345, "KWD", "12.345"), (12345, "BHD", "12.345"),
        (1, "JOD", "0.001"), (12345, "CLF", "1.2345"), (-250, "EUR", "-2.50"), (0, "USD", "0"),
        (999_999_999_999_999_99, "USD", "999999999999999.99"), (Decimal("12345"), "USD", "123.45"),
    ],
)
def test_currency_value_is_exact(amount: Any, code: str, expected: str) -> None:
    value, got_code = money.currency_value({"amount": amount, "currency_code": code, "formatted_amount": "x"}, "total", required=True)
    assert got_code == code
    assert value == Decimal(expected) and value is not None and value.as_tuple().exponent == -4


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ({"amount": 100, "currency_code": "ZZZ"}, "not an ISO 4217 currency"),
        ({"amount": 100, "currency_code": "XAU"}, "not an ISO 4217 currency"),
        ({"amount": 100, "currency_code": "usd"}, "not an ISO 4217 currency"),
        ({"amount": 100}, "currency_code is missing"),
        ({"amount": 100, "currency_code": 840}, "not a string"),
        ({"currency_code": "USD"}, "amount is missing"),
        ({"amount": 12.5, "currency_code": "USD"}, "must be an integer"),
        ({"amount": 12.0, "currency_code": "USD"}, "must be an integer"),
        ({"amount": Decimal("1E+3"), "currency_code": "USD"}, "must be an integer"),
        ({"amount": "100", "currency_code": "USD"}, "must be an integer"),
        ({"amount": True, "currency_code": "USD"}, "must be an integer"),
        ({"amount": 10**17, "currency_code": "USD"}, "does not fit numeric(19,4)"),
        ({"amount": 10**15, "currency_code": "JPY"}, "does not fit numeric(19,4)"),
        ({"amount": Decimal("9" * 5000), "currency_code": "USD"}, "does not fit numeric(19,4)"),
        ("100 USD", "must be a CurrencyValue object"),
    ],
)
def test_currency_value_rejections(value: Any, rule: str) -> None:
    text = reason(lambda: money.currency_value(value, "total", required=True))
    assert rule in text
    assert "ZZZ" not in text and "100" not in text.replace("total", "")  # never the value


def test_missing_currency_value() -> None:
    assert money.currency_value(None, "price", required=False) == (None, None)
    assert "price is missing" in reason(lambda: money.currency_value(None, "price", required=True))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(49.99, "49.99"), (10000, "10000"), (0.1, "0.1"), (Decimal("12.50"), "12.5"), (-0.0, "0"),
     (123456789012.345, "123456789012.345"), (1e-4, "0.0001"), (9999999999999.99, "9999999999999.99")],
)
def test_major_units_exact(value: Any, expected: str) -> None:
    assert money.major_units(value, "billing_amount") == Decimal(expected)


@pytest.mark.parametrize(
    ("value", "rule"),
    [(0.12345, "more than 4 decimals"), (1e15, "does not fit"), (1e300, "does not fit"),
     (123456789012.3456, "significant digits"), (0.30000000000000004, "significant digits"),
     # the JSON text 99999999999999.99 is the double whose repr is ...98: refused, never stored as 98
     (99999999999999.99, "significant digits"),
     (Decimal("0.00001"), "more than 4 decimals"), (Decimal("1E+400"), "does not fit"), (float("nan"), "finite"),
     (float("inf"), "finite"), (Decimal("NaN"), "finite"), ("49.99", "must be a number"), (True, "must be a number")],
)
def test_major_units_rejections(value: Any, rule: str) -> None:
    assert rule in reason(lambda: money.major_units(value, "billing_amount"))


def test_minor_units_lookup() -> None:
    assert (money.minor_units("JPY"), money.minor_units("KWD"), money.minor_units("CLF")) == (0, 3, 4)
    with pytest.raises(KeyError):
        money.minor_units("ZZZ")
