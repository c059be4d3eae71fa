"""Hostile Keap contacts: generated from the spec's Contact schema, written as the bytes Keap would send, judged.

Shared by the property tests (tests/property), the table of hostile classes
(tests/pipeline/test_hostile_records.py) and `make fuzz` (bench/fuzz_records.py).

- Wire values: a record is a Python value that may hold ``RawNumber`` (a number written with
  exactly these characters: ``12.50``, ``1E400``, 5,000 digits), ``WireStr`` (a string with raw
  bytes spliced in: bytes that are not UTF-8, a UTF-8-encoded surrogate) or be a ``RawRecord``
  (bytes that are not JSON at all). ``wire()`` writes the bytes, ``sent()`` says what they mean.
- The oracle: ``verdict()`` says whether a record must load or must become a dead letter, from
  the rules as docs state them (re-stated here, not imported from the normalizer), and
  ``expected_row()`` what its row must hold.
- Strategies (hypothesis): records from the Contact schema of the sandbox's contract (derived
  from keap-rest-v2.openapi.yml), with every hostile class of issue 9 mixed in.
- ``run_example()``: serve the records from the sandbox over a real socket, sync, check every
  invariant, replay, fix, replay, re-run; returns what each record produced.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import strategies as st

from keap_pipeline.jsontext import text_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // US
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // US
LIMITS = {"keap_id": 255, "email": 255, "first_name": 255, "last_name": 255, "phone": 50, "company": 255}
# a company name the tests' check constraint refuses: PostgreSQL, not the normalizer, says no
REFUSED_COMPANY = "Refused Ltd"
REFUSE_CONSTRAINT = "hostile_refused_company"


# --- wire values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawNumber:
    """A JSON number written with exactly these characters."""

    text: str


@dataclass(frozen=True)
class WireStr:
    """A JSON string whose bytes include raw ones (not UTF-8, or a UTF-8-encoded surrogate)."""

    parts: tuple[str | bytes, ...]


@dataclass(frozen=True)
class RawRecord:
    """A record written as these bytes, verbatim (not JSON on its own)."""

    data: bytes


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def _string(s: str, ascii_only: bool) -> bytes:
    if ascii_only:
        return json.dumps(s).encode()
    # UTF-8 as is; a lone surrogate has no UTF-8 form, Keap escapes it
    return _SURROGATE.sub(_surrogate_escape, json.dumps(s, ensure_ascii=False)).encode()


def wire(value: Any, ascii_only: bool = False) -> bytes:
    """The bytes of a value as Keap would send it (compact JSON)."""
    if isinstance(value, RawRecord):
        return value.data
    if isinstance(value, RawNumber):
        return value.text.encode()
    if isinstance(value, WireStr):
        out = b'"'
        for part in value.parts:
            out += part if isinstance(part, bytes) else _string(part, ascii_only)[1:-1]
        return out + b'"'
    if isinstance(value, str):
        return _string(value, ascii_only)
    if value is None or isinstance(value, bool):
        return json.dumps(value).encode()
    if isinstance(value, int):
        return int.__repr__(value).encode()
    if isinstance(value, float):
        return float.__repr__(value).encode()
    if isinstance(value, Decimal):
        return str(value).encode()
    if isinstance(value, list):
        return b"[" + b",".join(wire(v, ascii_only) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{" + b",".join(_string(k, ascii_only) + b":" + wire(v, ascii_only) for k, v in value.items()) + b"}"
    raise TypeError(type(value).__name__)


def sent(value: Any) -> Any:
    """What the wire bytes mean: strings as decoded (a raw bad byte as its lone surrogate), numbers exact (Decimal)."""
    if isinstance(value, RawNumber):
        return Decimal(value.text)
    if isinstance(value, WireStr):
        return "".join(text_of(p) if isinstance(p, bytes) else p for p in value.parts)
    if isinstance(value, float):
        return Decimal(float.__repr__(value))
    if isinstance(value, list):
        return [sent(v) for v in value]
    if isinstance(value, dict):
        return {k: sent(v) for k, v in value.items()}
    return value


def same_json(a: Any, b: Any) -> bool:
    """JSON values equal to the digit: numbers by exact value (Decimal), strings by character, types kept."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return False


# --- the oracle ---------------------------------------------------------------------------------

_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))", re.ASCII)


def instant_us(text: Any) -> int | None:
    """The instant a Keap date-time names, in epoch microseconds; None when it is not one we can store."""
    if not isinstance(text, str):
        return None
    m = _TS.fullmatch(text)
    if m is None:
        return None
    frac = m.group(7) or ""
    if frac[6:].strip("0"):
        return None  # finer than a microsecond
    try:
        local = datetime(*(int(m.group(i)) for i in range(1, 7)), int((frac + "000000")[:6]), tzinfo=UTC)  # type: ignore[misc]
    except ValueError:
        return None
    offset = 0
    if m.group(8) != "Z":
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 60 + minutes) * (1 if m.group(9) == "+" else -1)
    us = (local - EPOCH) // US - offset * 60_000_000
    return us if MIN_US <= us <= MAX_US else None


def _has_bad_text(value: Any) -> bool:
    """A NUL or a lone surrogate in any string or key, at any depth."""
    if isinstance(value, str):
        return "\x00" in value or _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_has_bad_text(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bad_text(k) or _has_bad_text(v) for k, v in value.items())
    return False


def _has_nan(value: Any) -> bool:
    if isinstance(value, Decimal):
        return not value.is_finite()
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False


def _overflows_numeric(value: Any) -> bool:
    """A number PostgreSQL's numeric cannot hold (more than 131,072 digits before the point or 16,383 after)."""
    if isinstance(value, Decimal) and value.is_finite():
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        return len(digits) + exponent > 131_072 or -exponent > 16_383
    if isinstance(value, list):
        return any(_overflows_numeric(v) for v in value)
    if isinstance(value, dict):
        return any(_overflows_numeric(v) for v in value.values())
    return False


def _text_ok(value: Any, limit: int, nullable: bool = True) -> bool:
    if value is None:
        return nullable
    return isinstance(value, str) and not _has_bad_text(value) and len(value) <= limit


def digits(value: Any) -> str | None:
    """An id's digits: a string of ASCII digits, or a non-negative JSON integer (any length); else None."""
    if isinstance(value, str):
        return value if value and value.isascii() and value.isdigit() else None
    if type(value) is int:
        return str(value) if value >= 0 else None
    if isinstance(value, Decimal) and value >= 0 and "E" not in str(value) and "." not in str(value):
        return str(value)  # an integer written with more digits than Python converts: still digits
    return None


def id_digits(value: Any) -> str | None:
    """A record id as the pipeline stores it: digits, at most the keap_id column's 255."""
    text = digits(value)
    return text if text is not None and len(text) <= LIMITS["keap_id"] else None


def _primary(entries: Any, slot: str) -> tuple[bool, dict[str, Any] | None]:
    """(valid?, the primary entry) of email_addresses / phone_numbers."""
    if entries is None or entries == []:
        return True, None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return False, None
    return True, next((e for e in entries if e.get("field") == slot), entries[0])


@dataclass
class Verdict:
    """What must become of one record: loaded (with this row) or a dead letter (the normalizer's or PostgreSQL's)."""

    loads: bool
    by_postgres: bool = False  # dead only because PostgreSQL refuses it (fixable: the constraint)
    row: dict[str, Any] | None = None


def verdict(value: Any) -> Verdict:
    """The rules of docs/operations.md / normalize.contacts, re-stated independently: load or dead letter."""
    record = sent(value) if not isinstance(value, RawRecord) else None
    if not isinstance(record, dict):
        return Verdict(False)
    keap_id = id_digits(record.get("id"))
    if keap_id is None:
        return Verdict(False)
    if not _text_ok(record.get("given_name"), LIMITS["first_name"]) or not _text_ok(record.get("family_name"), LIMITS["last_name"]):
        return Verdict(False)
    ok, entry = _primary(record.get("email_addresses"), "EMAIL1")
    email = None
    if not ok:
        return Verdict(False)
    if entry is not None:
        email = entry.get("email")
        if not _text_ok(email, LIMITS["email"], nullable=False):
            return Verdict(False)
    ok, entry = _primary(record.get("phone_numbers"), "PHONE1")
    phone = None
    if not ok:
        return Verdict(False)
    if entry is not None:
        number, extension = entry.get("number"), entry.get("extension")
        if not isinstance(number, str) or (extension is not None and not isinstance(extension, str)):
            return Verdict(False)
        phone = f"{number};ext={extension}" if extension else number
        if not _text_ok(phone, LIMITS["phone"]):
            return Verdict(False)
    company = record.get("company")
    company_name = None
    if company is not None:
        if not isinstance(company, dict) or not _text_ok(company.get("company_name"), LIMITS["company"]):
            return Verdict(False)
        company_name = company.get("company_name")
    tags = record.get("tag_ids")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or any(digits(t) is None for t in tags):
        return Verdict(False)
    tags = [digits(t) for t in tags]
    entries = record.get("custom_fields")
    custom: dict[str, Any] = {}
    if entries is not None:
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return Verdict(False)
        for e in entries:
            key = digits(e.get("id"))
            if key is None or key in custom:
                return Verdict(False)
            custom[key] = e.get("content")
        if _has_bad_text(custom) or _has_nan(custom):
            return Verdict(False)
    created = record.get("create_time")
    created_us = None
    if created is not None:
        created_us = instant_us(created)
        if created_us is None:
            return Verdict(False)
    updated_us = instant_us(record.get("update_time"))
    if updated_us is None:
        return Verdict(False)
    row = {
        "keap_id": keap_id, "email": email, "first_name": record.get("given_name"),
        "last_name": record.get("family_name"), "phone": phone, "company": company_name, "tags": tags,
        "custom_fields": custom, "keap_created_at": created_us, "keap_updated_at": updated_us,
    }
    refused = company_name == REFUSED_COMPANY
    overflow = _overflows_numeric(custom)
    return Verdict(not (refused or overflow), by_postgres=refused and not overflow, row=row)


# --- strategies ---------------------------------------------------------------------------------


def contact_schema() -> dict[str, Any]:
    """The Contact schema of the sandbox's contract (derived from keap-rest-v2.openapi.yml), $refs resolved lazily."""
    from keap_pipeline.sandbox.contract import load_contract

    return load_contract()["components"]["schemas"]


HOSTILE_TEXT: dict[str, list[Any]] = {
    "lone high surrogate": ["\ud83d", "Jo\ud83dhn", "\ud800"],
    "lone low surrogate": ["\ude00", "x\udfff"],
    "reversed surrogates": ["\ude00\ud83d", "a\udc00\ud800b"],
    "surrogate pair (emoji)": ["\U0001f600", "Zoë \U0001f9d1\u200d\U0001f4bb"],
    "UTF-8-encoded surrogate": [WireStr(("Jo", b"\xed\xa0\xbd", "hn"))],
    "bytes that are not UTF-8": [WireStr(("Jos", b"\xe9")), WireStr((b"\xff\xfe",))],
    "NUL": ["\x00", "Nul\x00Byte"],
    "U+2028/U+2029": ["line\u2028sep", "\u2029"],
    "BOM": ["\ufeffBOM", "\ufeff"],
    "tabs, CR, LF": ["a\tb", "a\rb", "a\nb", "\r\n", "\n\\.\n"],
    "backslashes, \\N, NULL, quotes": ["\\", "\\N", "NULL", "null", "", '"', "'", 'O\'Brien "Bob", Jr.', "C:\\path\\"],
}


def _at_limit(limit: int) -> dict[str, list[str]]:
    return {
        "at the limit (characters)": ["x" * limit, "\U0001f600" * limit, "e\u0301" * (limit // 2)],
        "one over the limit": ["x" * (limit + 1), "\U0001f600" * (limit + 1)],
        "very long": ["y" * (limit * 40 + 7)],
    }


def hostile_text(limit: int) -> st.SearchStrategy[tuple[str, Any]]:
    """(class, value) of a hostile string for a text field of `limit` characters."""
    classes = {**HOSTILE_TEXT, **_at_limit(limit)}
    fixed = st.sampled_from([(name, v) for name, values in classes.items() for v in values])
    alphabet = st.one_of(
        st.characters(),
        st.sampled_from(["\ud83d", "\ude00", "\x00", "\u2028", "\u2029", "\ufeff", "\t", "\r", "\n", "\\", '"', "'"]),
    )
    random_text = st.text(alphabet, max_size=12).map(lambda s: ("random text", s))
    return st.one_of(fixed, random_text)


WRONG_TYPES: list[Any] = [5, 1.5, True, False, [], ["x"], {}, {"a": None}, RawNumber("1" * 30)]
NUMBERS: dict[str, list[Any]] = {
    "numbers beyond 64 bits": [2**64, -(2**70) - 1, RawNumber("9" * 40), RawNumber("1" + "0" * 4500)],
    "exact decimals": [RawNumber("12.50"), RawNumber("0.1000000000000000000001"), RawNumber("1E400"), RawNumber("-0.0"), 0.1, 1e16],
    "numeric overflow": [RawNumber("1E+200000")],
}


@st.composite
def timestamp(draw: st.DrawFn, valid: bool = False) -> tuple[str, str]:
    """(class, text) of a date-time: valid with odd offsets (mostly, or always), or invalid."""
    if valid or draw(st.integers(0, 4)):
        moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2035, 1, 1)))
        offset = draw(st.sampled_from(["Z", "+00:00", "-00:00", "+14:00", "-12:00", "+05:45", "+09:30", "-23:59", "+23:59"]))
        digits = draw(st.sampled_from(["", ".1", ".123", ".123456", ".123456000", ".5"]))
        return "valid, odd offset", moment.strftime("%Y-%m-%dT%H:%M:%S") + digits + offset
    return draw(st.sampled_from([
        ("invalid timestamp", "2024-02-30T10:00:00Z"),
        ("invalid timestamp", "2024-03-15T10:30:60Z"),
        ("invalid timestamp", "2024-03-15T24:00:00Z"),
        ("invalid timestamp", "2024-03-15T10:30:00"),
        ("invalid timestamp", "2024-03-15"),
        ("invalid timestamp", "2024-03-15T10:30:00.1234567Z"),
        ("invalid timestamp", "2024-03-15T10:30:00+24:00"),
        ("invalid timestamp", "2024-03-15T10:30:00z"),
        ("invalid timestamp", "2024-03-15 10:30:00Z"),
        ("invalid timestamp", "0001-01-01T00:00:00+00:01"),
        ("invalid timestamp", "9999-12-31T23:59:59-00:01"),
        ("invalid timestamp", ""),
        ("invalid timestamp", "yesterday"),
    ]))


def _json_leaf() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([v for vs in NUMBERS.values() for v in vs if not (isinstance(v, RawNumber) and "E+2" in v.text)]),
        hostile_text(50).map(lambda cv: cv[1]).filter(lambda v: not isinstance(v, WireStr)),
    )


def json_value() -> st.SearchStrategy[Any]:
    """Any JSON value of small depth (a custom field's content), hostile leaves included."""
    return st.recursive(
        _json_leaf(),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text(8).map(lambda cv: cv[1]).filter(lambda v: isinstance(v, str)), inner, max_size=3)),
        max_leaves=6,
    )


ID_POOL = [str(i) for i in range(1, 13)]


@st.composite
def contact(draw: st.DrawFn, classes: Counter[str]) -> Any:
    """One contact as Keap could send it: the spec's Contact properties, some of them hostile.

    `classes` counts the hostile classes drawn (for the report of what each produced).
    """
    schemas = contact_schema()
    props = schemas["Contact"]["properties"]
    record: dict[str, Any] = {}

    def note(name: str) -> None:
        classes[name] += 1

    # a calm record has nothing hostile in what is stored (it must load); the others mix classes in
    calm = draw(st.integers(0, 9)) < 4

    def roll(hi: int, benign: int) -> int:
        return benign if calm else draw(st.integers(0, hi))

    # the id: usually one of a small pool (duplicates in a page and across pages), else hostile
    r = roll(19, 0)
    if r < 15:
        record["id"] = draw(st.sampled_from(ID_POOL))
    elif r == 15:
        note("id as a JSON integer (also beyond 64 bits)")
        record["id"] = draw(st.sampled_from([7, 2**70, 11]))
    elif r == 16:
        note("id missing")
    else:
        note("id not digits")
        record["id"] = draw(st.sampled_from(["", "12a", "-5", " 12", "١٢", "1" * 256, -5, 12.0, True, None, [1], {"id": "1"}, RawNumber("12.0")]))

    def text_field(name: str, limit: int) -> Any:
        r = roll(13, 0)
        if r < 8:
            return draw(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8))
        if r < 12:
            cls, v = draw(hostile_text(limit))
            note(cls)
            return v
        if r == 12:
            note("null")
            return None
        note("wrong JSON type")
        return draw(st.sampled_from(WRONG_TYPES))

    for name, limit in (("given_name", 255), ("family_name", 255)):
        if draw(st.booleans()):
            record[name] = text_field(name, limit)
    if draw(st.booleans()):
        r = roll(5, 5)
        if r == 0:
            note("empty and null arrays")
            record["email_addresses"] = draw(st.sampled_from([[], None]))
        elif r == 1:
            note("wrong JSON type")
            record["email_addresses"] = draw(st.sampled_from([{"email": "a@b.c"}, "a@b.c", [None], [5], [{"email": 5, "field": "EMAIL1"}]]))
        elif r == 2:
            note("nested nulls")
            record["email_addresses"] = [{"email": None, "field": "EMAIL1"}]
        else:
            entries = [{"email": text_field("email", 255), "field": draw(st.sampled_from(["EMAIL1", "EMAIL2", "EMAIL3"]))}
                       for _ in range(draw(st.integers(1, 2)))]
            record["email_addresses"] = entries
    if draw(st.booleans()):
        r = roll(4, 4)
        if r == 0:
            note("empty and null arrays")
            record["phone_numbers"] = draw(st.sampled_from([[], None]))
        elif r == 1:
            note("wrong JSON type")
            record["phone_numbers"] = draw(st.sampled_from(["555", [{"number": 5551234}], [{"number": "555", "extension": 12}], [{"number": None}]]))
        else:
            entry: dict[str, Any] = {"number": text_field("number", 50), "field": "PHONE1"}
            if draw(st.booleans()):
                entry["extension"] = draw(st.sampled_from(["", "12", None] if calm else ["", "12", "x" * 45, "1\x00", None]))
            record["phone_numbers"] = [entry]
    if draw(st.booleans()):
        r = roll(5, 5)
        if r == 0:
            note("nested nulls")
            record["company"] = draw(st.sampled_from([None, {"company_name": None}, {"id": None, "company_name": None}]))
        elif r == 1:
            note("wrong JSON type")
            record["company"] = draw(st.sampled_from(["Thryv", [], {"company_name": 5}]))
        elif r == 2:
            note("refused by a PostgreSQL constraint")
            record["company"] = {"id": "1", "company_name": REFUSED_COMPANY}
        else:
            record["company"] = {"id": "1", "company_name": text_field("company_name", 255)}
    if draw(st.booleans()):
        r = roll(4, 4)
        if r == 0:
            note("empty and null arrays")
            record["tag_ids"] = draw(st.sampled_from([[], None]))
        elif r == 1:
            note("wrong JSON type")
            record["tag_ids"] = draw(st.sampled_from(["1,2", [None], ["1", "vip"], [1.5], [True], {"1": 1}]))
        elif r == 2:
            note("numbers beyond 64 bits")
            record["tag_ids"] = [2**64, "18446744073709551617"]
        else:
            record["tag_ids"] = draw(st.lists(st.sampled_from(["1", "2", "3", 4, "99"]), max_size=3))
    if draw(st.booleans()):
        r = roll(5, 5)
        if r == 0:
            note("empty and null arrays")
            record["custom_fields"] = draw(st.sampled_from([[], None]))
        elif r == 1:
            note("wrong JSON type")
            record["custom_fields"] = draw(st.sampled_from([{"7": "Gold"}, [None], [{"content": 1}], [{"id": 7.0, "content": 1}], [{"id": "7", "content": 1}, {"id": 7, "content": 2}]]))
        else:
            entries = []
            for i in range(draw(st.integers(1, 3))):
                kind = roll(3, 3)
                if kind == 3 and calm:
                    content = draw(st.one_of(st.integers(), st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=5), st.none()))
                elif kind == 0:
                    cls = draw(st.sampled_from(list(NUMBERS)))
                    note(cls)
                    content = draw(st.sampled_from(NUMBERS[cls]))
                elif kind == 1:
                    note("nested nulls")
                    content = draw(st.sampled_from([None, [None], {"a": None, "b": [None, {}]}]))
                else:
                    content = draw(json_value())
                entries.append({"id": str(i + 1), "content": content})
            record["custom_fields"] = entries
    # timestamps: create_time sometimes, update_time nearly always
    if draw(st.booleans()):
        cls, text = draw(timestamp(calm))
        note(cls)
        record["create_time"] = text if roll(9, 1) else draw(st.sampled_from(WRONG_TYPES))
    if roll(9, 1):
        cls, text = draw(timestamp(calm))
        note(cls)
        record["update_time"] = text if roll(19, 1) else draw(st.sampled_from(WRONG_TYPES))
    else:
        note("update_time missing")
    # properties the pipeline does not store, from the spec, hostile or not: they must not matter
    others = sorted(set(props) - set(record) - {"id", "email_addresses", "phone_numbers", "company", "tag_ids", "custom_fields", "create_time", "update_time", "given_name", "family_name"})
    for name in draw(st.lists(st.sampled_from(others), max_size=3, unique=True)):
        spec = props[name]
        if spec.get("type") == "string":
            cls, v = draw(hostile_text(40))
            note(f"{cls} (in a field not stored)")
            record[name] = v
        elif spec.get("type") == "array":
            record[name] = draw(st.sampled_from([[], None, [{"line1": "\ud83d"}], [{"x": WireStr((b"\xff",))}]]))
        else:
            record[name] = draw(st.sampled_from([None, {}, {"a": "\x00"}]))
    return record


@st.composite
def served_item(draw: st.DrawFn, classes: Counter[str]) -> Any:
    """A record of a contacts page: usually a contact, sometimes not an object or not JSON."""
    r = draw(st.integers(0, 29))
    if r == 0:
        classes["record not an object"] += 1
        return draw(st.sampled_from([None, 5, "1001", [], [{"id": "1"}], True]))
    if r == 1:
        classes["record not JSON on its own"] += 1
        return RawRecord(draw(st.sampled_from([
            b'{"id":"3","given_name":"bad \\x escape","update_time":"2024-01-01T00:00:00Z"}',
            b'{"id":"4","given_name":"raw\ttab","update_time":"2024-01-01T00:00:00Z"}',
            b'{"id":"5","custom_fields":[{"id":"1","content":' + b"[" * 3000 + b"]" * 3000 + b'}],"update_time":"2024-01-01T00:00:00Z"}',
        ])))
    return draw(contact(classes))


# --- serving and checking -----------------------------------------------------------------------


@dataclass
class Item:
    """One served record: its bytes, what it meant, and where it was served."""

    value: Any
    data: bytes
    verdict: Verdict
    placed_us: int
    keap_id: str | None = None


def place(values: Sequence[Any], draw_index: Callable[[int], int], ascii_flags: Sequence[bool]) -> list[Item]:
    """The records in the order Keap serves them: by their update time; ones without a valid one anywhere."""
    dated: list[Item] = []
    undated: list[Any] = []
    for value, ascii_only in zip(values, ascii_flags, strict=True):
        data = wire(value, ascii_only)
        judged = verdict(value)
        record = sent(value) if not isinstance(value, RawRecord) else None
        updated = instant_us(record.get("update_time")) if isinstance(record, dict) else None
        keap_id = id_digits(record.get("id")) if isinstance(record, dict) else None
        item = Item(value, data, judged, updated if updated is not None else 0, keap_id)
        (dated if updated is not None else undated).append(item)
    dated.sort(key=lambda i: i.placed_us)
    for item in undated:
        at = draw_index(len(dated) + 1)
        neighbour = dated[at - 1].placed_us if at > 0 and dated else (dated[0].placed_us if dated else 1_700_000_000_000_000)
        item.placed_us = neighbour
        dated.insert(at, item)
    return dated


def reset(url: str) -> None:
    """Empty every table a sync writes (one database per test, many examples)."""
    # delete, not truncate: a few rows in each, and truncate costs a lock and a file per table
    # and audit partition
    with psycopg.connect(url) as conn:
        for table_name in (
            "public.sync_conflicts", "public.sync_queue", "public.sync_status", "public.sync_audit_log",
            "public.sync_contacts", "keap_pipeline.dead_letters", "keap_pipeline.sync_cursors",
            "keap_pipeline.stage_contacts", "keap_pipeline.stage_contact_keys",
        ):
            conn.execute(f"delete from {table_name}")  # noqa: S608 - fixed names
        conn.execute(f"alter table public.sync_contacts drop constraint if exists {REFUSE_CONSTRAINT}")
        conn.execute(
            f"alter table public.sync_contacts add constraint {REFUSE_CONSTRAINT}"
            f" check (company is distinct from '{REFUSED_COMPANY}')"
        )


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - EPOCH) // US


def table(url: str) -> dict[str, dict[str, Any]]:
    """sync_contacts' pipeline columns, jsonb decoded to the digit."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select keap_id, email, first_name, last_name, phone, company, tags::text, custom_fields::text,"
            " keap_created_at, keap_updated_at from public.sync_contacts"
        ).fetchall()
    out = {}
    for r in rows:
        out[r[0]] = {
            "keap_id": r[0], "email": r[1], "first_name": r[2], "last_name": r[3], "phone": r[4], "company": r[5],
            "tags": json.loads(r[6]), "custom_fields": json.loads(r[7], parse_float=Decimal, parse_int=Decimal),
            "keap_created_at": _us(r[8]), "keap_updated_at": _us(r[9]),
        }
    return out


def letters(url: str) -> list[dict[str, Any]]:
    """Every dead letter, as stored."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("select * from keap_pipeline.dead_letters order by id").fetchall()


def writes(url: str) -> dict[str, Any]:
    """What a sync that changes nothing must leave as it is: rows (xmin), audit, queue, conflicts, status, dead letters."""
    with psycopg.connect(url) as conn:
        return {
            "rows": conn.execute("select keap_id, xmin::text, version from public.sync_contacts order by keap_id").fetchall(),
            "counts": conn.execute(
                "select (select count(*) from public.sync_audit_log), (select count(*) from public.sync_queue),"
                " (select count(*) from public.sync_conflicts), (select count(*) from public.sync_status),"
                " (select count(*) from keap_pipeline.stage_contacts)"
            ).fetchone(),
            # attempts and last_seen_at count sightings; what a letter is and holds must not change
            "letters": conn.execute(
                "select id, keap_id, status, reason, field, record_bytes, record_json from keap_pipeline.dead_letters order by id"
            ).fetchall(),
        }


def expected_letters(items: Sequence[Item], loads: Callable[[Item], bool]) -> tuple[dict[str, bytes], Counter[bytes], dict[str, set[bytes]]]:
    """(open letter bytes by keap_id, open id-less letters' bytes, every dead version's bytes by keap_id)."""
    open_by_id: dict[str, bytes] = {}
    idless: Counter[bytes] = Counter()
    dead: dict[str, set[bytes]] = {}
    for item in items:
        if loads(item):
            if item.keap_id is not None:
                open_by_id.pop(item.keap_id, None)
            continue
        if item.keap_id is None:
            idless[item.data] += 1
        else:
            open_by_id[item.keap_id] = item.data
            dead.setdefault(item.keap_id, set()).add(item.data)
    return open_by_id, idless, dead


def expected_table(items: Sequence[Item], loads: Callable[[Item], bool]) -> dict[str, list[dict[str, Any]]]:
    """By keap_id: the rows of its loadable versions, in the order served (the last one's content wins)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if loads(item) and item.verdict.row is not None:
            out.setdefault(item.keap_id or "", []).append(item.verdict.row)
    return out


_CONTENT = ("email", "first_name", "last_name", "phone", "company", "tags", "custom_fields", "keap_created_at")


def check_state(url: str, items: Sequence[Item], loads: Callable[[Item], bool]) -> None:
    """Nothing lost, nothing duplicated, loaded text equal to what was sent, dead letters hold the originals."""
    rows = table(url)
    want = expected_table(items, loads)
    assert set(rows) == set(want), f"rows for {sorted(set(rows) ^ set(want))[:5]} lost or invented"
    for keap_id, versions in want.items():
        row, last = rows[keap_id], versions[-1]
        for column in ("keap_id", *_CONTENT):
            assert same_json(row[column], last[column]), f"{keap_id}.{column} is not what Keap sent last"
        # an unchanged re-send keeps the time its content was first seen: one of the same content
        same = [v["keap_updated_at"] for v in versions if all(same_json(v[c], last[c]) for c in _CONTENT)]
        assert row["keap_updated_at"] in same, f"{keap_id}.keap_updated_at is no version's with this content"
    open_by_id, idless, _ = expected_letters(items, loads)
    _, _, dead = expected_letters(items, lambda i: i.verdict.loads)  # every version that was ever refused
    stored = letters(url)
    opened = [d for d in stored if d["status"] == "open"]
    by_id = {d["keap_id"]: d for d in opened if d["keap_id"] is not None}
    assert len(by_id) == len([d for d in opened if d["keap_id"] is not None]), "two open letters for one record"
    assert {k: bytes(d["record_bytes"]) for k, d in by_id.items()} == open_by_id, "open dead letters hold what Keap sent last"
    unnamed = Counter(bytes(d["record_bytes"]) for d in opened if d["keap_id"] is None)
    assert set(unnamed) == set(idless) and all(n == 1 for n in unnamed.values()), "one open letter per id-less record"
    served = {i.data for i in items}
    for d in stored:
        assert d["record_bytes"] is not None and bytes(d["record_bytes"]) in served, "a dead letter holds bytes Keap sent"
        assert d["record_json"].isascii()
        if d["keap_id"] is not None:
            assert bytes(d["record_bytes"]) in dead.get(d["keap_id"], set()), (
                f"letter {d['keap_id']} ({d['status']}: {d['reason']}) holds a version the oracle loads: {bytes(d['record_bytes'])[:300]!r}"
            )
        assert d["reason"] and "\n" not in d["reason"]
        check_reason_private(d["reason"], d["record_bytes"])


_WORDS = re.compile(r"[a-z ]*")


def check_reason_private(reason: str, data: bytes) -> None:
    """A reason names fields and rules, never a value the record holds."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return
    for leaf in _leaves(record):
        if len(leaf) >= 6 and not _WORDS.fullmatch(leaf):
            assert leaf not in reason, "a dead-letter reason quotes a value"


def _leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)] if len(str(value)) >= 8 else []
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    return []


@dataclass
class Outcome:
    """What one example did: records tried, loaded, dead-lettered (by the normalizer / PostgreSQL)."""

    records: int = 0
    loaded: int = 0
    dead: int = 0
    refused_then_replayed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: Outcome) -> None:
        """Add another example's figures to these."""
        self.records += other.records
        self.loaded += other.loaded
        self.dead += other.dead
        self.refused_then_replayed += other.refused_then_replayed
        self.reasons.update(other.reasons)


def check_verdicts(items: Sequence[Item]) -> None:
    """The oracle and the pipeline's normalizer agree on every record (a disagreement names both)."""
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.jsontext import decode_list_body
    from keap_pipeline.pipeline.pages import normalize_records

    page = b'{"contacts":[' + b",".join(i.data for i in items) + b'],"next_page_token":""}'
    records = decode_list_body(page, "contacts")["contacts"]
    result = normalize_records(CONTACTS, records, fetched_at=datetime.now(UTC))
    rejected = {r.ordinal: r for r in result.rejected}
    for n, item in enumerate(items):
        normalizer_loads = n not in rejected
        oracle_loads = item.verdict.loads or item.verdict.row is not None
        assert normalizer_loads == oracle_loads, (
            f"oracle {'loads' if oracle_loads else 'rejects'} but the normalizer "
            f"{'loads' if normalizer_loads else 'rejects: ' + rejected[n].reason}: {item.data[:400]!r}"
        )


def run_example(url: str, handle: Any, client_for: Callable[[Any], Any], items: Sequence[Item], *,
                page_size: int, pages_per_batch: int, loaders: int) -> Outcome:
    """Serve `items` from the sandbox, sync, check, replay, fix, replay, re-run; every invariant after each step."""
    from keap_pipeline.entities import CONTACTS
    from keap_pipeline.pipeline.replay import replay_dead_letters
    from keap_pipeline.pipeline.sync import sync_entity

    check_verdicts(items)
    reset(url)
    handle.state.put_raw_contacts([(i.data, i.placed_us // 1000) for i in items])

    def sync(**kwargs: Any) -> Any:
        with client_for(handle) as client:
            return sync_entity(client, url, CONTACTS, page_size=page_size, pages_per_batch=pages_per_batch,
                               loaders=loaders, run_id="hostile", **kwargs)

    report = sync()
    assert report.records_seen == len(items), "every record Keap sent was read"
    assert report.stopped_early is None
    loads = lambda i: i.verdict.loads  # noqa: E731
    check_state(url, items, loads)

    # a replay before any fix: every open letter still fails, nothing is written, nothing changes
    before = writes(url)
    open_count = sum(1 for d in letters(url) if d["status"] == "open")
    replay = replay_dead_letters(url, "contacts")
    assert replay.replayed == [] and len(replay.still_failing) == open_count
    assert writes(url) == before

    # the operator drops the constraint PostgreSQL refused with: those letters replay, the rest fail
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"alter table public.sync_contacts drop constraint {REFUSE_CONSTRAINT}")
    refused_open = {d["keap_id"] for d in letters(url) if d["status"] == "open" and "constraint " + REFUSE_CONSTRAINT in d["reason"]}
    replay = replay_dead_letters(url, "contacts")
    assert len(replay.replayed) == len(refused_open)

    def loads_after_fix(item: Item) -> bool:
        return item.verdict.loads or (item.verdict.by_postgres and item.keap_id in refused_open and _last_of(items, item))

    check_state(url, items, loads_after_fix)

    # a re-run writes nothing: the whole listing again (Keap lists each record once, as it is now:
    # its last version; every record without an id stays)
    handle.state.put_raw_contacts([(i.data, i.placed_us // 1000) for i in current_versions(items)])
    before = writes(url)
    again = sync(scope="window:rerun")
    assert again.counts.inserted == again.counts.updated == 0
    assert writes(url) == before
    outcome = Outcome(records=len(items))
    outcome.loaded = sum(1 for i in items if i.verdict.loads)
    outcome.dead = len(items) - outcome.loaded
    outcome.refused_then_replayed = len(refused_open)
    outcome.reasons.update(_reason_kind(d["reason"]) for d in letters(url))
    return outcome


def current_versions(items: Sequence[Item]) -> list[Item]:
    """What Keap lists once the listing is over: each record's last version, every record without an id."""
    return [i for i in items if i.keap_id is None or _last_of(items, i)]


def _last_of(items: Sequence[Item], item: Item) -> bool:
    """Whether no later item has the same id (items compared by identity: two may be equal)."""
    at = next(n for n, i in enumerate(items) if i is item)
    return not any(i.keap_id == item.keap_id for i in items[at + 1:])


def _reason_kind(reason: str) -> str:
    return re.sub(r"\[\d+\]", "[i]", re.sub(r"\d+ characters", "N characters", reason))


# the hostile classes of issue 9 that the generators must cross (tests assert each was drawn)
REQUIRED_CLASSES = (
    "lone high surrogate", "lone low surrogate", "reversed surrogates", "NUL", "U+2028/U+2029", "BOM",
    "very long", "at the limit (characters)", "one over the limit", "tabs, CR, LF",
    "backslashes, \\N, NULL, quotes", "numbers beyond 64 bits", "exact decimals", "wrong JSON type",
    "empty and null arrays", "nested nulls", "id missing", "id not digits", "valid, odd offset",
    "invalid timestamp", "record not an object", "record not JSON on its own", "bytes that are not UTF-8",
    "refused by a PostgreSQL constraint", "numeric overflow",
)


@st.composite
def example(draw: st.DrawFn, classes: Counter[str], min_records: int = 25, max_records: int = 55) -> tuple[list[Item], tuple[int, int, int]]:
    """A listing's worth of records in the order Keap serves them, and how the sync is set
    (page size, pages per batch, loaders)."""
    values = draw(st.lists(served_item(classes), min_size=min_records, max_size=max_records))
    ascii_only = draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    items = place(values, lambda n: draw(st.integers(0, n - 1)), ascii_only)
    knobs = (draw(st.integers(1, 9)), draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    return items, knobs


# --- the other entities: hostile versions of the sandbox's records, judged by the normalizer alone ------

# The fields each entity's normalizer reads (dotted paths into the record), from the spec's schemas
# (Tag, RestV2Product_List, OrderV2, Subscription): each may be replaced by a hostile value.
ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "tags": ("id", "name", "description", "category", "category.id", "update_time", "create_time"),
    "products": ("id", "name", "sku", "description", "price", "price.amount", "price.currency_code", "active",
                 "update_time"),
    "orders": ("id", "contact", "contact.id", "invoice_number", "order_time", "total", "total.amount",
               "total.currency_code", "status", "order_items", "shipping_information", "modification_time"),
    "subscriptions": ("id", "active", "contact_id", "product_id", "subscription_plan_id", "start_date", "end_date",
                      "next_bill_date", "billing_cycle", "billing_frequency", "billing_amount", "modification_time"),
}
MISSING = object()
DATES: list[Any] = ["2024-05-21", "2024-02-29", "2024-02-30", "20240521", "2024-W21-2", "2024-05-21T00:00:00Z", "", "0000-01-01"]
CURRENCY_VALUES: list[Any] = [
    {"amount": 1999, "currency_code": "USD"}, {"amount": 1500, "currency_code": "JPY"},
    {"amount": 12345, "currency_code": "KWD"}, {"amount": 1, "currency_code": "CLF"},
    {"amount": 100, "currency_code": "ZZZ"}, {"amount": 100, "currency_code": "XAU"}, {"amount": RawNumber("12.5"), "currency_code": "USD"},
    {"amount": RawNumber("1E+3"), "currency_code": "USD"}, {"amount": 2**70, "currency_code": "USD"}, {"currency_code": "USD"},
    {"amount": 5}, {"amount": "5", "currency_code": "USD"}, {"amount": -250, "currency_code": "EUR"},
]


def _hostile_value(draw: st.DrawFn, classes: Counter[str]) -> Any:
    kind = draw(st.integers(-3, 8))
    if kind <= 0:  # text most often: most stored fields are strings
        cls, value = draw(hostile_text(draw(st.sampled_from([50, 255]))))
    elif kind == 1:
        cls, value = "wrong JSON type", draw(st.sampled_from(WRONG_TYPES))
    elif kind == 2:
        cls, value = draw(st.sampled_from([(c, v) for c, vs in NUMBERS.items() for v in vs]))
    elif kind == 3:
        cls, value = draw(timestamp())
    elif kind == 4:
        cls, value = "dates", draw(st.sampled_from(DATES))
    elif kind == 5:
        cls, value = "currency values", draw(st.sampled_from(CURRENCY_VALUES))
    elif kind == 6:
        cls, value = "any JSON", draw(json_value())
    elif kind == 7:
        cls, value = "nested nulls", None
    else:
        cls, value = "missing", MISSING
    classes[cls] += 1
    return value


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = record
    for key in parents:
        if not isinstance(target, dict):
            return
        target = target.setdefault(key, {})
    if not isinstance(target, dict):
        return
    if value is MISSING:
        target.pop(last, None)
    else:
        target[last] = value


@st.composite
def entity_record(draw: st.DrawFn, entity: str, base: Sequence[dict[str, Any]], classes: Counter[str]) -> Any:
    """One record of `entity` as Keap could send it: a sandbox record with some fields made hostile."""
    import copy

    shape = draw(st.integers(0, 29))
    if shape == 0:
        classes["record not an object"] += 1
        return draw(st.sampled_from([[], "x", 5, None, [{"id": "1"}]]))
    if shape == 1:
        classes["record not JSON on its own"] += 1
        return RawRecord(draw(st.sampled_from([b'{"id":"1","name":"a\\qb"}', b'{"id":"2","x":"\t"}', b"[" * 3000 + b"]" * 3000])))
    record = copy.deepcopy(draw(st.sampled_from(list(base))))
    for path in draw(st.lists(st.sampled_from(ENTITY_FIELDS[entity]), max_size=4, unique=True)):
        _set(record, path, _hostile_value(draw, classes))
    return record


def normalize_wire(entity: str, values: Sequence[Any], ascii_only: bool = False) -> tuple[list[Any], Any]:
    """The records as the client decodes a page of their wire bytes, and the pipeline's normalized result."""
    from keap_pipeline.entities import ENTITIES
    from keap_pipeline.jsontext import decode_list_body
    from keap_pipeline.pipeline.pages import normalize_records

    e = ENTITIES[entity]
    page = b'{"' + e.list_key.encode() + b'":[' + b",".join(wire(v, ascii_only) for v in values) + b'],"next_page_token":""}'
    records = decode_list_body(page, e.list_key)[e.list_key]
    return records, normalize_records(e, records, fetched_at=datetime.now(UTC))
