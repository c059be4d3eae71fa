"""Field rules shared by every entity's normalizer: ids, text, instants, dates, booleans, integers, JSON.

Each rule takes the value as decoded from Keap's JSON and the Keap field's name, and returns what
is stored, or raises ``Reject`` naming the field and the rule (never the value: reasons reach
logs, Dagster metadata and the dead-letter table, values are customer data). A rule never
truncates, strips or coerces: a value that does not fit is a rejection.

What the rules share:

- text is counted in characters as PostgreSQL counts them for UTF-8 (code points: Python's len);
  a NUL cannot be stored (PostgreSQL text and jsonb refuse it); a lone surrogate cannot either
  (it is not UTF-8), which the frame builder finds (normalize.frame) rather than every rule.
- ids are strings of ASCII digits, or non-negative JSON integers rendered as their digits.
- instants are strict ISO-8601 with a zone, kept to the microsecond (normalize.timestamps).
- JSON is canonical: keys sorted at every depth, compact separators, UTF-8 kept, numbers with
  every digit Keap sent (a Decimal where a float would change them), NaN and Infinity refused.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from typing import Any

from keap_pipeline.jsontext import canonical
from keap_pipeline.normalize.errors import TimestampError
from keap_pipeline.normalize.timestamps import parse_instant_us

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
NUL_RULE = "contains a NUL character (\\u0000), which PostgreSQL cannot store"
SURROGATE_RULE = (
    "holds a lone surrogate (not valid Unicode, or bytes that are not UTF-8), which PostgreSQL cannot store"
)
JSON_NUL_RULE = "contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store"


class Reject(Exception):  # noqa: N818 - control flow between a rule and its normalizer, not an error
    """This record cannot be loaded: the Keap field at fault (None: the record itself) and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def type_name(value: Any) -> str:
    """The JSON type of a decoded value, for reasons ("got a JSON number")."""
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


def id_digits(value: Any, field: str) -> str:
    """An id as its digits: a string of ASCII digits, or a non-negative JSON integer.

    Args:
        value: the decoded value.
        field: the Keap field, for the reason.

    Returns:
        The digits (any number of them; the caller checks the column limit).

    Raises:
        Reject: missing, negative, or not digits.
    """
    if type(value) is str:
        if value and value.isascii() and value.isdigit():
            return value
        raise Reject(field, f"{field} is not a string of digits")
    if type(value) is int:  # not isinstance: True/False are ints to Python, not ids
        if value >= 0:
            return str(value)
        raise Reject(field, f"{field} is a negative number")
    if type(value) is Decimal and value.as_tuple().exponent == 0:
        # an integer of thousands of digits (keap_pipeline.jsontext.exact_int); as_tuple keeps its digits
        if value >= 0:
            return "".join(map(str, value.as_tuple().digits))
        raise Reject(field, f"{field} is a negative number")
    if value is None:
        raise Reject(field, f"{field} is missing")
    raise Reject(field, f"{field} must be a string of digits, got a JSON {type_name(value)}")


def id_text(value: Any, field: str, column: str, limit: int) -> str | None:
    """An optional reference to another Keap record (``contact.id``): null passes, else id digits within the limit.

    Args:
        value: the decoded value.
        field: the Keap field.
        column: the staging column, for the reason.
        limit: the column's varchar limit.

    Returns:
        The digits, or None.

    Raises:
        Reject: not digits, or longer than the column.
    """
    if value is None:
        return None
    digits = id_digits(value, field)
    return text(digits, field, column, limit)


def text(value: Any, field: str, column: str, limit: int | None) -> str | None:
    """A stored string: null passes; non-strings, NULs and over-long values reject.

    Args:
        value: the decoded value.
        field: the Keap field (or a description of the stored value), for the reason.
        column: the staging column, for the reason.
        limit: the column's varchar limit, or None for text.

    Returns:
        The string, unchanged, or None.

    Raises:
        Reject: not a string, holds a NUL, or longer than the column.
    """
    if value is None:
        return None
    if type(value) is not str:
        raise Reject(field, f"{field} must be a string, got a JSON {type_name(value)}")
    if "\x00" in value:
        raise Reject(field, f"{field} {NUL_RULE}")
    if limit is not None and len(value) > limit:
        raise Reject(
            field,
            f"{field} is {len(value)} characters, longer than the column limit "
            f"{column} varchar({limit})",
        )
    return value


def required_text(value: Any, field: str, column: str, limit: int | None) -> str:
    """Like ``text``, for a NOT NULL column: a missing value rejects.

    Raises:
        Reject: missing, or as ``text``.
    """
    if value is None:
        raise Reject(field, f"{field} is missing; {column} cannot be empty")
    stored = text(value, field, column, limit)
    assert stored is not None
    return stored


def obj(value: Any, field: str) -> dict[str, Any] | None:
    """A nested JSON object (``company``, ``total``): null passes, anything but an object rejects.

    Raises:
        Reject: not an object.
    """
    if value is None or type(value) is dict:
        return value
    raise Reject(field, f"{field} must be an object, got a JSON {type_name(value)}")


def boolean(value: Any, field: str, *, required: bool) -> bool | None:
    """A JSON boolean, kept as it is (never 0/1, "true" or other truthiness).

    Raises:
        Reject: missing when required, or not a boolean.
    """
    if value is None:
        if required:
            raise Reject(field, f"{field} is missing")
        return None
    if type(value) is bool:
        return value
    raise Reject(field, f"{field} must be true or false, got a JSON {type_name(value)}")


def int32(value: Any, field: str) -> int | None:
    """A JSON integer that fits PostgreSQL's integer (int4): null passes.

    A number written with a fraction or an exponent is refused even when it is whole (``1.0``):
    the spec says integer, and Keap writes integers without either.

    Raises:
        Reject: not an integer, or outside -2^31 .. 2^31-1.
    """
    if value is None:
        return None
    if type(value) is not int:
        if type(value) is Decimal and value.as_tuple().exponent == 0:
            raise Reject(field, f"{field} is outside the integer range of PostgreSQL (-2^31 to 2^31-1)")
        raise Reject(field, f"{field} must be an integer, got a JSON {type_name(value)}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise Reject(field, f"{field} is outside the integer range of PostgreSQL (-2^31 to 2^31-1)")
    return value


def instant_us(value: Any, field: str, *, required: bool, why: str = "the sync cursor needs it") -> int | None:
    """An ISO-8601 date-time with a zone as UTC epoch microseconds (timestamps.parse_instant_us).

    Args:
        value: the decoded value.
        field: the Keap field.
        required: whether a missing value rejects the record.
        why: the end of the reason for a missing required value.

    Returns:
        Epoch microseconds, or None.

    Raises:
        Reject: missing when required, not a string, or not a strict instant within years 1-9999.
    """
    if value is None:
        if required:
            raise Reject(field, f"{field} is missing; {why}")
        return None
    if type(value) is not str:
        raise Reject(field, f"{field} must be an ISO-8601 string, got a JSON {type_name(value)}")
    try:
        return parse_instant_us(value)
    except TimestampError as exc:
        raise Reject(field, f"{field} {exc}") from None


# Exactly YYYY-MM-DD (re.ASCII: no other scripts' digits). date.fromisoformat alone also takes
# 20240521 and week dates (2024-W21-2), which the spec's `format: date` does not.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII).fullmatch
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def date_days(value: Any, field: str) -> int | None:
    """A calendar date (the spec's ``format: date``, ``2024-05-21``) as days since 1970-01-01.

    Strict: exactly YYYY-MM-DD, a real date of years 1 to 9999; a date-time or any other form
    rejects (a time would have to be dropped, a zone guessed).

    Raises:
        Reject: not a string of that form, or not a real date.
    """
    if value is None:
        return None
    if type(value) is not str:
        raise Reject(field, f"{field} must be a YYYY-MM-DD string, got a JSON {type_name(value)}")
    if _DATE(value) is None:
        raise Reject(field, f"{field} is not a date of the form YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Reject(field, f"{field} is not a real calendar date") from None
    return day.toordinal() - _EPOCH_ORDINAL


def _not_json(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


# The canonical encoder's settings; CANONICAL_JSON is the same text, built for speed.
CANONICAL = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))

# JSONEncoder.encode builds a fresh C encoder on every call, which is half the cost of encoding a
# small object; build it once with the same settings as CANONICAL (tests hold them equal).
# markers=None skips the cycle check: values decoded from JSON cannot be cyclic (a cyclic
# Python object ends in RecursionError, which is rejected).
# c_make_encoder is private to json.encoder and typeshed does not declare it, hence getattr;
# encode_basestring is the C function whenever c_make_encoder exists (and is what
# JSONEncoder itself uses with ensure_ascii=False).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    _c_encode = _c_make_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def canonical_json(value: Any) -> str:
        """Canonical JSON text of a value holding no Decimal (TypeError for one; see json_text)."""
        return "".join(_c_encode(value, 0))
else:  # pragma: no cover - CPython always has the C accelerator

    def canonical_json(value: Any) -> str:
        """Canonical JSON text of a value holding no Decimal (TypeError for one; see json_text)."""
        return CANONICAL.encode(value)


def has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL in any string or key, at any depth."""
    if type(value) is str:
        return "\x00" in value
    if type(value) is list:
        return any(has_nul(v) for v in value)
    if type(value) is dict:
        return any("\x00" in k or has_nul(v) for k, v in value.items())
    return False


def json_text(value: Any, field: str) -> str:
    """A decoded JSON value as canonical text for a jsonb column.

    Numbers keep every digit Keap sent (a Decimal is written as its digits); NaN and Infinity,
    values that are not JSON, nesting deeper than Python can encode and NULs anywhere reject.

    Args:
        value: the value (as keap_pipeline.jsontext.decode_json made it).
        field: the Keap field, for the reason.

    Returns:
        The canonical text.

    Raises:
        Reject: as above.
    """
    try:
        try:
            out = canonical_json(value)
        except TypeError:
            # a Decimal (a number a float cannot hold exactly) or a value that is not JSON
            out = canonical(value)
    except ValueError:
        raise Reject(field, f"{field} holds NaN or Infinity, which JSON and jsonb cannot hold") from None
    except (TypeError, RecursionError) as exc:
        raise Reject(field, f"{field} holds a non-JSON value ({exc})") from None
    # NUL can only be present if its escape is in the text; confirm on the value (a literal
    # backslash followed by "u0000" is not a NUL).
    if "\\u0000" in out and has_nul(value):
        raise Reject(field, f"{field} {JSON_NUL_RULE}")
    return out


def json_array(value: Any, field: str) -> str:
    """A JSON array for a jsonb column that holds one (``line_items``): absent or null is ``[]``.

    Raises:
        Reject: not an array, or as ``json_text``.
    """
    if value is None:
        return "[]"
    if type(value) is not list:
        raise Reject(field, f"{field} must be an array, got a JSON {type_name(value)}")
    return json_text(value, field)


def json_object(value: Any, field: str) -> str | None:
    """A JSON object for a nullable jsonb column (``shipping_address``): absent or null is NULL.

    Raises:
        Reject: not an object, or as ``json_text``.
    """
    if value is None:
        return None
    if type(value) is not dict:
        raise Reject(field, f"{field} must be an object, got a JSON {type_name(value)}")
    return json_text(value, field)


def utf8(value: str | None, field: str) -> str | None:
    """A string that is UTF-8 (no lone surrogate), for text sent to PostgreSQL outside a frame.

    (A frame's text is checked by normalize.frame, which finds the rare row cheaply.)

    Raises:
        Reject: it holds a lone surrogate.
    """
    if value is not None and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject(field, f"{field} {SURROGATE_RULE}") from None
    return value
