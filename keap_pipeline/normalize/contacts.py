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

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from keap_pipeline.entities import CONTACTS
from keap_pipeline.jsontext import canonical
from keap_pipeline.normalize import timestamps
from keap_pipeline.normalize.content_hash import add_content_hash
from keap_pipeline.normalize.errors import (
    BatchTooLargeError,
    NaiveFetchedAtError,
    TimestampError,
)
from keap_pipeline.normalize.result import NormalizeResult, Rejected
from keap_pipeline.normalize.timestamps import parse_instant_us

_UTC_US = pl.Datetime("us", "UTC")
# parse_instant_us's fast path, bound here so _row can inline it.
_exact_instant = timestamps.EXACT
_fromisoformat = timestamps.fromisoformat
_EPOCH = timestamps.EPOCH
_MICROSECOND = timestamps.MICROSECOND
_MIN_US = timestamps.MIN_US
_MAX_US = timestamps.MAX_US

# The columns one record's row is built of, in order (the content hash is appended after).
# Data type instances, not classes: pl.Schema stores instances either way, and a dict of
# instances is typed as one (a dict mixing classes and instances is not).
_ROW_SCHEMA = pl.Schema(
    {
        "ordinal": pl.Int32(),
        "keap_id": pl.Utf8(),
        "email": pl.Utf8(),
        "first_name": pl.Utf8(),
        "last_name": pl.Utf8(),
        "phone": pl.Utf8(),
        "company": pl.Utf8(),
        "tags": pl.Utf8(),
        "custom_fields": pl.Utf8(),
        "keap_created_at": _UTC_US,
        "keap_updated_at": _UTC_US,
    }
)
# What is hashed into content_hash: everything stored except the batch position, the id and
# Keap's update time (a record Keap re-saved with the same content is unchanged).
CONTENT_COLUMNS = ("email", "first_name", "last_name", "phone", "company", "tags", "custom_fields", "keap_created_at")
# The staging schema, in COPY order; tests check the names against entities.CONTACTS.
CONTACT_SCHEMA = pl.Schema({**_ROW_SCHEMA, "content_hash": pl.Utf8()})
# Row tuple positions whose strings go to PostgreSQL (checked for lone surrogates on fallback),
# with the Keap field each comes from.
_TEXT_SOURCES = (
    (1, "id"),
    (2, "email_addresses"),
    (3, "given_name"),
    (4, "family_name"),
    (5, "phone_numbers"),
    (6, "company.company_name"),
    (7, "tag_ids"),
    (8, "custom_fields"),
)

_LIMITS = CONTACTS.column_limits
_ID_LIMIT = _LIMITS["keap_id"]
_EMAIL_LIMIT = _LIMITS["email"]
_FIRST_LIMIT = _LIMITS["first_name"]
_LAST_LIMIT = _LIMITS["last_name"]
_PHONE_LIMIT = _LIMITS["phone"]
_COMPANY_LIMIT = _LIMITS["company"]
_INT32_MAX = 2**31 - 1

_CANONICAL = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _not_json(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


# JSONEncoder.encode builds a fresh C encoder on every call, which is half the cost of encoding a
# small object; build it once with the same settings as _CANONICAL (tests hold them equal).
# markers=None skips the cycle check: values decoded from JSON cannot be cyclic (a cyclic
# Python object ends in RecursionError, which is rejected).
# c_make_encoder is private to json.encoder and typeshed does not declare it, hence getattr;
# encode_basestring is the C function whenever c_make_encoder exists (and is what
# JSONEncoder itself uses with ensure_ascii=False).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    _c_encode = _c_make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )

    def _canonical_json(value: Any) -> str:
        return "".join(_c_encode(value, 0))
else:  # pragma: no cover - CPython always has the C accelerator

    def _canonical_json(value: Any) -> str:
        return _CANONICAL.encode(value)


class _Reject(Exception):  # noqa: N818 - control flow inside this module, never escapes it
    """Internal: this record cannot be loaded; carries the field and the reason."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _id_digits(value: Any, field: str) -> str:
    """An id as its digits: a string of ASCII digits, or a non-negative JSON integer."""
    if type(value) is str:
        if value and value.isascii() and value.isdigit():
            return value
        raise _Reject(field, f"{field} is not a string of digits")
    if type(value) is int:  # not isinstance: True/False are ints to Python, not ids
        if value >= 0:
            return str(value)
        raise _Reject(field, f"{field} is a negative number")
    if type(value) is Decimal and value.as_tuple().exponent == 0:
        # an integer of thousands of digits (keap_pipeline.jsontext.exact_int); as_tuple keeps its digits
        if value >= 0:
            return "".join(map(str, value.as_tuple().digits))
        raise _Reject(field, f"{field} is a negative number")
    if value is None:
        raise _Reject(field, f"{field} is missing")
    raise _Reject(field, f"{field} must be a string of digits, got a JSON {_type_name(value)}")


def _text(value: Any, field: str, column: str, limit: int) -> str | None:
    """A stored string: null passes; non-strings, NULs and over-long values reject."""
    if value is None:
        return None
    if type(value) is not str:
        raise _Reject(field, f"{field} must be a string, got a JSON {_type_name(value)}")
    if "\x00" in value:
        raise _Reject(
            field, f"{field} contains a NUL character (\\u0000), which PostgreSQL cannot store"
        )
    if len(value) > limit:
        raise _Reject(
            field,
            f"{field} is {len(value)} characters, longer than the column limit "
            f"{column} varchar({limit})",
        )
    return value


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


def _has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL in any string or key, at any depth."""
    if type(value) is str:
        return "\x00" in value
    if type(value) is list:
        return any(_has_nul(v) for v in value)
    if type(value) is dict:
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    return False


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
    try:
        try:
            text = _canonical_json(values)
        except TypeError:
            # a Decimal (a number a float cannot hold exactly) or a value that is not JSON
            text = canonical(values)
    except ValueError:
        raise _Reject(
            "custom_fields", "custom_fields holds NaN or Infinity, which JSON and jsonb cannot hold"
        ) from None
    except (TypeError, RecursionError) as exc:
        raise _Reject("custom_fields", f"custom_fields holds a non-JSON value ({exc})") from None
    # Fast path: NUL can only be present if the escape appears in the text; confirm on the values
    # (a literal backslash followed by "u0000" is not a NUL).
    if "\\u0000" in text and _has_nul(values):
        raise _Reject(
            "custom_fields",
            "custom_fields contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store",
        )
    return text


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


def _instant(value: Any, field: str, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise _Reject(field, f"{field} is missing; the sync cursor needs it")
        return None
    if type(value) is not str:
        raise _Reject(field, f"{field} must be an ISO-8601 string, got a JSON {_type_name(value)}")
    try:
        return parse_instant_us(value)
    except TimestampError as exc:
        raise _Reject(field, f"{field} {exc}") from None


def _row(ordinal: int, record: Any) -> tuple[Any, ...]:
    """One staging row, in CONTACT_SCHEMA order; raises _Reject.

    Each value is checked inline for the common case and handed to the helper that names the
    problem only when the inline check fails: function calls are most of the cost here.
    """
    if type(record) is not dict:
        raise _Reject(None, f"the record must be a JSON object, got a JSON {_type_name(record)}")
    get = record.get
    keap_id = get("id")
    if type(keap_id) is not str or not keap_id.isdigit() or not keap_id.isascii():
        keap_id = _id_digits(keap_id, "id")
    if len(keap_id) > _ID_LIMIT:
        raise _Reject(
            "id",
            f"id is {len(keap_id)} characters, longer than the column limit keap_id varchar({_ID_LIMIT})",
        )
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
            created = us if _MIN_US <= us <= _MAX_US else _instant(created, "create_time", required=False)
        else:
            created = _instant(created, "create_time", required=False)
    updated = get("update_time")
    if type(updated) is str and _exact_instant(updated) is not None:
        try:
            us = (_fromisoformat(updated) - _EPOCH) // _MICROSECOND
        except ValueError:
            us = _MIN_US - 1
        updated = us if _MIN_US <= us <= _MAX_US else _instant(updated, "update_time", required=True)
    else:
        updated = _instant(updated, "update_time", required=True)
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


def _valid_id(record: Any) -> str | None:
    """The record's id as digits when it has a valid one, for the rejection's keap_id."""
    if type(record) is not dict:
        return None
    try:
        keap_id = _id_digits(record.get("id"), "id")
    except _Reject:
        return None
    return keap_id if len(keap_id) <= _ID_LIMIT else None


def _surrogate_field(row: tuple[Any, ...]) -> str | None:
    """The Keap field of a row holding text that is not valid UTF-8 (a lone surrogate), if any."""
    for pos, field in _TEXT_SOURCES:
        value = row[pos]
        if value is not None and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return field
    return None


def _frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_ROW_SCHEMA)
    series = []
    for (name, dtype), values in zip(_ROW_SCHEMA.items(), columns, strict=True):
        if dtype == _UTC_US:
            # Epoch microseconds -> Datetime: exact, and far faster than converting datetimes.
            series.append(pl.Series(name, values, dtype=pl.Int64).cast(_UTC_US))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return add_content_hash(pl.DataFrame(series), CONTENT_COLUMNS)


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
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise NaiveFetchedAtError(
            "fetched_at must be time-zone aware (e.g. datetime.now(timezone.utc))"
        )
    if len(records) > _INT32_MAX:
        raise BatchTooLargeError(f"{len(records)} records in one batch; at most {_INT32_MAX}")
    rows: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, Rejected]] = []
    append = rows.append
    for ordinal, record in enumerate(records):
        try:
            append(_row(ordinal, record))
        except _Reject as exc:
            rejected.append((ordinal, Rejected(record, _valid_id(record), exc.reason, exc.field)))
    try:
        frame = _frame(rows)
    except UnicodeEncodeError:
        # Rare slow path: some stored text holds a lone surrogate (JSON "\ud800" decodes to one),
        # which neither polars nor PostgreSQL can hold; find those rows and reject them.
        kept = []
        for row in rows:
            field = _surrogate_field(row)
            if field is None:
                kept.append(row)
            else:
                ordinal = row[0]
                record = records[ordinal]
                reason = (
                    f"{field} holds a lone surrogate (not valid Unicode, or bytes that are "
                    "not UTF-8), which PostgreSQL cannot store"
                )
                rejected.append((ordinal, Rejected(record, _valid_id(record), reason, field)))
        rejected.sort(key=lambda pair: pair[0])
        frame = _frame(kept)
    return NormalizeResult(frame=frame, rejected=[r for _, r in rejected], fetched_at=fetched_at)
