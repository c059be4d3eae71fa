"""Keap contact records -> the stage_contacts frame, plus the records that cannot be loaded and why.

The rules, one place:

- keap_id: Keap ids are JSON strings of ASCII digits; a JSON integer (not a boolean) >= 0 is
  accepted and rendered as its digits (any number of them).  Anything else rejects the record.
- email: the PRIMARY email, the entry whose ``field`` is EMAIL1, else the first entry.  No
  ``email_addresses`` (absent, null or []) means no email: a normal contact, email is null.
- phone: the primary phone, the entry whose ``field`` is PHONE1, else the first.  Rendered as
  ``number`` alone, or ``number + ";ext=" + extension`` when the extension is a non-empty
  string (RFC 3966's extension syntax), e.g. ``"+44 20 7946 0958;ext=12"``.  The number is
  kept as Keap holds it (not reformatted, not E.164'd).
- first_name / last_name / company: given_name, family_name, company.company_name as-is.
- tags: a JSON array of the tag ids as digit strings, in Keap's order (not sorted: the order
  Keap returns for an unchanged contact is stable, and sorting would invent an order Keap did
  not give).  Absent or null ``tag_ids`` means no tags: ``[]``.  Compact separators, so an
  unchanged contact gives byte-identical text.
- custom_fields: a JSON object ``{custom_field_id: content}``, content kept as the JSON value it
  is (string, number, boolean, null, array, object); a missing ``content`` is JSON null.  Keys
  sorted at every depth, compact separators, ``ensure_ascii=False``: canonical text.  Absent
  or null ``custom_fields`` means ``{}``.  Numbers keep every digit Keap sent (the client
  decodes a number a float cannot print back exactly as a Decimal, keap_pipeline.jsontext), so jsonb
  gets ``12.50`` or ``1E+400`` as sent; NaN/Infinity are rejected, never coerced.
- keap_created_at / keap_updated_at: create_time / update_time parsed strictly (see
  ``timestamps.parse_instant_us``), within the years 1 to 9999 in UTC; update_time is
  required (the cursor needs it), create_time may be absent.

Rejected (never truncated, stripped or coerced): a missing or invalid id or update_time; an
invalid create_time; a value of the wrong JSON type; a stored value longer than its column
limit; a NUL character (PostgreSQL text and jsonb cannot hold it) or a lone surrogate (not
UTF-8; also what bytes that are not UTF-8 decode to) in anything stored; duplicate custom field
ids (one JSON object cannot hold both).  What is not stored (other emails, other phones,
addresses, ...) is not validated.

A reason names the field and the rule, never the value: reasons reach logs and Dagster
metadata, values are customer data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from keap_pipeline.entities import CONTACTS
from keap_pipeline.normalize import timestamps
from keap_pipeline.normalize.fields import CANONICAL as _CANONICAL
from keap_pipeline.normalize.fields import Reject as _Reject
from keap_pipeline.normalize.fields import canonical_json as _canonical_json
from keap_pipeline.normalize.fields import id_digits as _id_digits
from keap_pipeline.normalize.fields import instant_us, json_text
from keap_pipeline.normalize.fields import text as _text
from keap_pipeline.normalize.fields import type_name as _type_name
from keap_pipeline.normalize.frame import RowNormalizer, record_id
from keap_pipeline.normalize.result import NormalizeResult

# parse_instant_us's fast path, bound here so _row can inline it.
_exact_instant = timestamps.EXACT
_fromisoformat = timestamps.fromisoformat
_EPOCH = timestamps.EPOCH
_MICROSECOND = timestamps.MICROSECOND
_MIN_US = timestamps.MIN_US
_MAX_US = timestamps.MAX_US

# What is hashed into content_hash: everything stored except the batch position, the id and
# Keap's update time (a record Keap re-saved with the same content is unchanged); the shared rule
# (CONTACTS.hashed_columns) gives exactly these, tests hold them equal.
CONTENT_COLUMNS = ("email", "first_name", "last_name", "phone", "company", "tags", "custom_fields", "keap_created_at")

_LIMITS = CONTACTS.column_limits
_ID_LIMIT = _LIMITS["keap_id"]
_EMAIL_LIMIT = _LIMITS["email"]
_FIRST_LIMIT = _LIMITS["first_name"]
_LAST_LIMIT = _LIMITS["last_name"]
_PHONE_LIMIT = _LIMITS["phone"]
_COMPANY_LIMIT = _LIMITS["company"]

__all__ = ["CONTACT_SCHEMA", "CONTENT_COLUMNS", "normalize_contacts", "_CANONICAL", "_canonical_json"]


def _primary_entry(value: Any, field: str, slot: str) -> tuple[int, dict[str, Any]] | None:
    """The primary entry of email_addresses/phone_numbers: the one in ``slot``, else the first.

    Returns None for no entries (absent, null or []); rejects a non-array or a non-object entry.
    """
    if value is None:
        return None
    if type(value) is not list:
        raise _Reject(field, f"{field} must be an array, got a JSON {_type_name(value)}")
    found = None
    for i, entry in enumerate(value):
        if type(entry) is not dict:
            raise _Reject(
                f"{field}[{i}]", f"{field}[{i}] must be an object, got a JSON {_type_name(entry)}"
            )
        if found is None and entry.get("field") == slot:
            found = i
    if found is None:
        return (0, value[0]) if value else None
    return found, value[found]


def _email(record: dict[str, Any]) -> str | None:
    primary = _primary_entry(record.get("email_addresses"), "email_addresses", "EMAIL1")
    if primary is None:
        return None
    i, entry = primary
    email = entry.get("email")
    if type(email) is str and len(email) <= _EMAIL_LIMIT and "\x00" not in email:
        return email
    field = f"email_addresses[{i}].email"
    if email is None:
        raise _Reject(field, f"{field} is missing in the primary email entry")
    return _text(email, field, "email", _EMAIL_LIMIT)


def _phone(record: dict[str, Any]) -> str | None:
    primary = _primary_entry(record.get("phone_numbers"), "phone_numbers", "PHONE1")
    if primary is None:
        return None
    i, entry = primary
    number = entry.get("number")
    extension = entry.get("extension")
    field = f"phone_numbers[{i}].number"
    if number is None:
        raise _Reject(field, f"{field} is missing in the primary phone entry")
    if extension is not None and type(extension) is not str:
        raise _Reject(
            f"phone_numbers[{i}].extension",
            f"phone_numbers[{i}].extension must be a string, got a JSON {_type_name(extension)}",
        )
    if type(number) is not str:
        raise _Reject(field, f"{field} must be a string, got a JSON {_type_name(number)}")
    if extension:
        if "\x00" in extension:
            raise _Reject(
                f"phone_numbers[{i}].extension",
                f"phone_numbers[{i}].extension contains a NUL character (\\u0000), "
                "which PostgreSQL cannot store",
            )
        # Lossless: the extension rides along in RFC 3966 syntax instead of being dropped.
        return _text(
            f"{number};ext={extension}",
            f"phone_numbers[{i}] (number;ext=extension)",
            "phone",
            _PHONE_LIMIT,
        )
    return _text(number, field, "phone", _PHONE_LIMIT)


def _company(record: dict[str, Any]) -> str | None:
    company = record.get("company")
    if company is None:
        return None
    if type(company) is not dict:
        raise _Reject("company", f"company must be an object, got a JSON {_type_name(company)}")
    return _text(company.get("company_name"), "company.company_name", "company", _COMPANY_LIMIT)


def _tags(record: dict[str, Any]) -> str:
    tag_ids = record.get("tag_ids")
    if tag_ids is None:
        return "[]"
    if type(tag_ids) is not list:
        raise _Reject("tag_ids", f"tag_ids must be an array, got a JSON {_type_name(tag_ids)}")
    if not tag_ids:
        return "[]"
    for t in tag_ids:
        if type(t) is not str or not t.isdigit() or not t.isascii():
            # Slow path: ints become their digits; anything else rejects with its index.
            tag_ids = [_id_digits(t, f"tag_ids[{i}]") for i, t in enumerate(tag_ids)]
            break
    # Digit strings need no JSON escaping: joined directly, the bytes equal the canonical JSON.
    return '["' + '","'.join(tag_ids) + '"]'


def _custom_fields(record: dict[str, Any]) -> str:
    entries = record.get("custom_fields")
    if entries is None:
        return "{}"
    if type(entries) is not list:
        raise _Reject(
            "custom_fields", f"custom_fields must be an array, got a JSON {_type_name(entries)}"
        )
    try:
        # Fast path for well-formed entries; anything unusual is re-walked below to name it.
        values = {entry["id"]: entry.get("content") for entry in entries}
        fast = len(values) == len(entries) and all(
            type(k) is str and k.isdigit() and k.isascii() for k in values
        )
    except (TypeError, KeyError, AttributeError):
        fast = False
    if not fast:
        values = _custom_field_values(entries)
    if not values:
        return "{}"
    # fast path inline (a call per contact is measurable); anything unusual (a Decimal, NaN, a
    # non-JSON value, a NUL escape) goes to json_text, which gives the text or the rejection
    try:
        text = _canonical_json(values)
    except (TypeError, ValueError, RecursionError):
        return json_text(values, "custom_fields")
    return json_text(values, "custom_fields") if "\\u0000" in text else text


def _custom_field_values(entries: list[Any]) -> dict[str, Any]:
    """The custom_fields entries as {id: content}, rejecting the first entry that is wrong."""
    values: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if type(entry) is not dict:
            raise _Reject(
                f"custom_fields[{i}]",
                f"custom_fields[{i}] must be an object, got a JSON {_type_name(entry)}",
            )
        key = entry.get("id")
        if type(key) is not str or not key.isdigit() or not key.isascii():
            key = _id_digits(key, f"custom_fields[{i}].id")
        if key in values:
            raise _Reject(
                f"custom_fields[{i}].id",
                f"custom_fields[{i}].id appears twice (an earlier entry has the same id); "
                "one JSON object cannot keep both values",
            )
        values[key] = entry.get("content")
    return values


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    """One staging row, in CONTACT_SCHEMA order (without content_hash); raises Reject.

    Each value is checked inline for the common case and handed to the helper that names the
    problem only when the inline check fails: function calls are most of the cost here.
    """
    if type(record) is not dict:
        raise _Reject(None, f"the record must be a JSON object, got a JSON {_type_name(record)}")
    get = record.get
    keap_id = get("id")
    if type(keap_id) is not str or not keap_id.isdigit() or not keap_id.isascii() or len(keap_id) > _ID_LIMIT:
        keap_id = record_id(record, _ID_LIMIT)  # digits from an integer, or the rejection
    first = get("given_name")
    if first is not None and (
        type(first) is not str or len(first) > _FIRST_LIMIT or "\x00" in first
    ):
        _text(first, "given_name", "first_name", _FIRST_LIMIT)
    last = get("family_name")
    if last is not None and (type(last) is not str or len(last) > _LAST_LIMIT or "\x00" in last):
        _text(last, "family_name", "last_name", _LAST_LIMIT)
    # Timestamps inline: the exact-shape match and fromisoformat are parse_instant_us's fast path.
    created = get("create_time")
    if created is not None:
        if type(created) is str and _exact_instant(created) is not None:
            try:
                us = (_fromisoformat(created) - _EPOCH) // _MICROSECOND
            except ValueError:
                us = _MIN_US - 1  # parse_instant_us says what is wrong
            # outside years 1..9999 in UTC (an offset can take a valid local time there): rejected
            created = us if _MIN_US <= us <= _MAX_US else instant_us(created, "create_time", required=False)
        else:
            created = instant_us(created, "create_time", required=False)
    updated = get("update_time")
    if type(updated) is str and _exact_instant(updated) is not None:
        try:
            us = (_fromisoformat(updated) - _EPOCH) // _MICROSECOND
        except ValueError:
            us = _MIN_US - 1
        updated = us if _MIN_US <= us <= _MAX_US else instant_us(updated, "update_time", required=True)
    else:
        updated = instant_us(updated, "update_time", required=True)
    return (
        ordinal,
        keap_id,
        _email(record),
        first,
        last,
        _phone(record) if get("phone_numbers") is not None else None,
        _company(record) if get("company") is not None else None,
        _tags(record),
        _custom_fields(record),
        created,
        updated,
    )


_NORMALIZER = RowNormalizer(
    CONTACTS,
    _row,
    # the Keap field each stored text comes from (named when one holds a lone surrogate)
    {
        "keap_id": "id",
        "email": "email_addresses",
        "first_name": "given_name",
        "last_name": "family_name",
        "phone": "phone_numbers",
        "company": "company.company_name",
        "tags": "tag_ids",
        "custom_fields": "custom_fields",
    },
)
# The staging schema, in COPY order (derived from entities.CONTACTS).
CONTACT_SCHEMA = _NORMALIZER.schema


def normalize_contacts(records: Sequence[Any], *, fetched_at: datetime) -> NormalizeResult:
    """Turn one batch of Keap contact records into stage_contacts rows and rejections.

    Every input record ends up either as one row of ``frame`` (its ``ordinal`` is its position
    in ``records``) or as one ``Rejected``: ``frame.height + len(rejected) == len(records)``.
    The rules for each column are in this module's docstring.

    Args:
        records: the contacts as decoded from Keap's JSON, in the order Keap returned them.
        fetched_at: when the batch was fetched; must carry a time zone.

    Returns:
        The frame (exactly ``CONTACT_SCHEMA``) and the rejected records in input order.

    Raises:
        NaiveFetchedAtError: fetched_at has no time zone.
        BatchTooLargeError: more records than an Int32 ordinal can number.
    """
    return _NORMALIZER(records, fetched_at=fetched_at)
