"""JSON as Keap sent it: numbers to the last digit, every record of a page even when one is broken,
each record's own bytes, and an ASCII JSON text of any record that any database can store.

Why each piece exists:

- ``decode_json``: msgspec's decoder (about three times ``json.loads``' speed on a contacts page), with
  ``json.loads`` and its hooks as the reference it must equal: a body msgspec refuses for any reason
  (bytes that are not UTF-8, a lone surrogate escape, NaN, a BOM, an integer past its range) or that
  holds a run of digits long enough to be an integer of INT_DIGITS digits is decoded by ``json.loads``
  instead, so the value is the same either way. A number with a fraction or an exponent stays a
  ``float`` only when the float prints back as the very digits Keap sent (``0.1``, ``12.5``);
  otherwise (``12.50``, ``1E+400``, ``0.1000000000000000000001``) it is a ``Decimal`` of those
  digits, so a custom field's value reaches jsonb unchanged. An integer of more than 4,000 digits
  is a ``Decimal`` too (CPython refuses int/str conversions past 4,300 digits, which would fail the
  whole page). A body that is not UTF-8 is still decoded: bytes that are not UTF-8 become lone
  surrogates (U+DC80..U+DCFF, Python's ``surrogateescape``), UTF-8-encoded surrogates become
  those surrogates; the normalizer rejects any of them in a stored value, and the dead letter
  keeps the record's exact bytes.
- ``decode_list_body``: a list page whose body does not decode as a whole (one record with an
  invalid escape, a raw control character, nesting deeper than the decoder's recursion limit) is
  split into its records, each decoded alone; the ones that do not decode become
  ``UndecodableRecord`` (its bytes and why), which the pipeline dead-letters like any other
  record instead of failing the page.
- ``list_spans``: the byte range of each record in its page, so a dead letter can keep exactly
  the bytes Keap sent for it.
- ``ascii_text`` / ``dumps``: a record as JSON text of ASCII characters only (``\\uXXXX`` escapes,
  a lone surrogate as its own escape), which always encodes and decodes back to the same value.
- ``canonical``: the normalizer's canonical JSON (sorted keys, compact) for values that hold a
  ``Decimal``, character for character what the standard encoder gives for the others.
"""

from __future__ import annotations

import codecs
import gc
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

# CPython refuses to convert integers of more than 4,300 digits to or from text (ValueError)
INT_DIGITS = 4000
_UTF8_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"


def exact_float(text: str) -> float | Decimal:
    """A JSON number with a fraction or an exponent, kept to its digits.

    Args:
        text: the number as it appears in the JSON text.

    Returns:
        A float when the float prints back as exactly ``text``, else the Decimal of ``text``.
    """
    value = float(text)
    if float.__repr__(value) == text:
        return value
    return Decimal(text)


def exact_int(text: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal past CPython's int/str conversion limit.

    Args:
        text: the integer as it appears in the JSON text.

    Returns:
        The int, or for more than INT_DIGITS digits the Decimal of ``text``.
    """
    if len(text) < INT_DIGITS:
        return int(text)
    return Decimal(text)


def _lenient(err: UnicodeError) -> tuple[str, int]:
    """Decode error handler: a UTF-8-encoded surrogate as that surrogate, any other bad byte as U+DC80+byte."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    data, i = err.object, err.start
    if (
        data[i] == 0xED
        and i + 2 < len(data)
        and 0xA0 <= data[i + 1] <= 0xBF
        and 0x80 <= data[i + 2] <= 0xBF
    ):
        return chr(0xD000 | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)), i + 3
    return chr(0xDC00 + data[i]), i + 1


codecs.register_error("keap-lenient", _lenient)


def text_of(raw: bytes) -> str:
    """UTF-8 bytes as text, bytes that are not UTF-8 as lone surrogates (never an error).

    Args:
        raw: the bytes.

    Returns:
        The text.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "keap-lenient")


def _loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=exact_float, parse_int=exact_int)


# msgspec hands every number with a fraction or an exponent to float_hook as its text, exactly as
# written (json.loads' parse_float); integers it decodes exactly, up to CPython's 4,300 digits.
_fast = msgspec.json.Decoder(float_hook=exact_float).decode
_DIGIT_STRIDE = INT_DIGITS // 2
_digit_run = re.compile(rb"[0-9]*")


def _long_digit_run(raw: bytes) -> bool:
    """Whether the bytes hold INT_DIGITS - 1 consecutive ASCII digits (perhaps an integer exact_int makes a Decimal).

    Such a run covers a multiple of INT_DIGITS / 2, so only those positions are looked at: a
    few hundred per page instead of every byte.
    """
    need = INT_DIGITS - 1
    run_end = _digit_run_end
    for at in range(0, len(raw), _DIGIT_STRIDE):
        if 0x30 <= raw[at] <= 0x39:
            end = run_end(raw, at)
            if end >= need and run_end(raw, end - need) >= end:
                return True
    return False


def _digit_run_end(raw: bytes, at: int) -> int:
    """Where the run of ASCII digits starting at `at` ends."""
    m = _digit_run.match(raw, at)
    return at if m is None else m.end()


def decode_json(content: bytes) -> Any:
    """Decode a JSON body exactly, with the cyclic garbage collector paused.

    Decoded JSON is a tree, it cannot hold a reference cycle, so collector passes while a
    1000-record page is being built (dozens of them, each walking the growing page) find nothing
    to free; they were a large share of the client's time on pipeline pages (docs/benchmarks.md:
    78k -> 89k records/s). The objects stay tracked and are collected as usual once the page is
    dropped.

    msgspec decodes first; whatever it refuses, and any body with a digit run that could be an
    integer of INT_DIGITS digits, goes to ``json.loads`` with exact_float / exact_int, which
    says what the value is (msgspec agrees with it on everything it accepts: floats through the
    same exact_float, integers exactly; tests/keap/test_jsontext.py holds them equal). (orjson
    decodes faster still but turns integers beyond 64 bits into floats without a word: a
    numeric custom field could be silently changed.)

    Args:
        content: the body.

    Returns:
        The value; numbers as exact_float / exact_int make them.

    Raises:
        ValueError: the body is not JSON (RecursionError: it nests deeper than the decoder can).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        if not _long_digit_run(content):
            try:
                return _fast(content)
            except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
                pass  # json.loads decides: the same value, a lenient text, or the error to raise
        try:
            return _loads(content)
        except UnicodeDecodeError:
            return _loads(text_of(content.removeprefix(_UTF8_BOM)))
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class UndecodableRecord:
    """A record of a list page that is not JSON on its own: its bytes, and why (no value quoted)."""

    raw: bytes = field(repr=False)
    reason: str


def decode_record(raw: bytes) -> Any:
    """One record's bytes decoded, or an UndecodableRecord saying why they cannot be.

    Args:
        raw: the record's bytes (its slice of the page).

    Returns:
        The decoded value, or UndecodableRecord.
    """
    try:
        return decode_json(raw)
    except RecursionError:
        return UndecodableRecord(raw, "the record nests deeper than the JSON decoder allows")
    except json.JSONDecodeError as err:
        return UndecodableRecord(raw, f"the record is not valid JSON ({err.msg.removesuffix(' at')} at character {err.pos})")
    except ValueError as err:
        return UndecodableRecord(raw, f"the record is not valid JSON ({type(err).__name__})")


# a whole string (escapes included), a lone quote (an unterminated string: not scannable), or one
# structural character; everything else (numbers, literals, whitespace) lies between them
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|["\[\]{},:]', re.S)


@dataclass(frozen=True)
class ListLayout:
    """Where a list page's records are: the array's brackets and each element's byte range."""

    open_at: int
    close_at: int
    spans: list[tuple[int, int]]


def _strip(raw: bytes, start: int, end: int) -> tuple[int, int]:
    while start < end and raw[start] in _WS:
        start += 1
    while end > start and raw[end - 1] in _WS:
        end -= 1
    return start, end


def _is_key(token: bytes, key: str) -> bool:
    if token == b'"' + key.encode() + b'"':
        return True
    try:
        return bool(json.loads(text_of(token)) == key)
    except ValueError:
        return False


def list_layout(raw: bytes, list_key: str) -> ListLayout | None:
    """Find the elements of the top-level array ``list_key`` of a JSON object, without decoding them.

    Structural characters are ASCII and never occur inside a UTF-8 multi-byte sequence, so the
    scan works on the bytes, valid UTF-8 or not. When the key occurs more than once the last one
    counts, as with json.loads.

    Args:
        raw: the body of a list response.
        list_key: the array's key, e.g. "contacts".

    Returns:
        The layout, or None when the body is not an object with such an array that can be split
        (an unterminated string, unbalanced brackets, an empty element).
    """
    depth = 0
    expect_key = False
    key: bytes | None = None
    armed = False  # the key just read is list_key and its value starts with the next token
    in_list = False
    open_at = 0
    start = 0
    spans: list[tuple[int, int]] = []
    found: ListLayout | None = None
    for m in _TOKENS.finditer(raw):
        token = m.group()
        c = token[0]
        was_armed, armed = armed, False
        if c == 0x22:  # "
            if len(token) == 1:
                return None
            if depth == 1 and expect_key:
                key, expect_key = token, False
        elif c == 0x7B or c == 0x5B:  # { [
            if depth == 0 and c != 0x7B:
                return None
            if depth == 1 and c == 0x5B and was_armed:
                in_list, open_at, start, spans = True, m.start(), m.end(), []
            depth += 1
            if depth == 1:
                expect_key = True
        elif c == 0x7D or c == 0x5D:  # } ]
            depth -= 1
            if depth < 0:
                return None
            if in_list and depth == 1:
                if c != 0x5D:
                    return None
                s, e = _strip(raw, start, m.start())
                if s < e:
                    spans.append((s, e))
                elif spans:
                    return None  # a trailing comma
                in_list = False
                found = ListLayout(open_at, m.start(), spans)
        elif c == 0x2C:  # ,
            if in_list and depth == 2:
                s, e = _strip(raw, start, m.start())
                if s == e:
                    return None
                spans.append((s, e))
                start = m.end()
            elif depth == 1:
                expect_key = True
        elif c == 0x3A and depth == 1 and key is not None:  # :
            armed = _is_key(key, list_key)
            key = None
    if depth != 0:
        return None
    return found


def list_spans(raw: bytes, list_key: str) -> list[tuple[int, int]] | None:
    """The byte range of each record of a list page, in order (see list_layout)."""
    layout = list_layout(raw, list_key)
    return None if layout is None else layout.spans


def decode_list_body(raw: bytes, list_key: str) -> Any:
    """A list response's body decoded; when it does not decode whole, split into its records.

    Args:
        raw: the body.
        list_key: the key of the records' array.

    Returns:
        The decoded body; records that do not decode alone are UndecodableRecord.

    Raises:
        ValueError: the body is not JSON and cannot be split into records (the fault is not
            inside one record), or RecursionError outside the records.
    """
    try:
        return decode_json(raw)
    except (ValueError, RecursionError) as err:
        layout = list_layout(raw, list_key)
        if layout is None:
            raise
        try:
            body = decode_json(raw[: layout.open_at] + b"[]" + raw[layout.close_at + 1 :])
        except (ValueError, RecursionError):
            raise err from None
        if not isinstance(body, dict):
            raise err from None
        body[list_key] = [decode_record(raw[s:e]) for s, e in layout.spans]
        return body


_NON_ASCII = re.compile(r"[^\x01-\x7f]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def ascii_text(raw: bytes) -> str:
    """A record's bytes as ASCII text: every other character (and NUL) as a ``\\uXXXX`` escape.

    For a record that is JSON (any record that decoded) the text is JSON and decodes to the same
    value as the bytes: escapes of characters are only possible inside strings, where they mean
    the character. Bytes that are not UTF-8 appear as their lone surrogates (see text_of).

    Args:
        raw: the record's bytes.

    Returns:
        ASCII text.
    """
    text = text_of(raw)
    if text.isascii() and "\x00" not in text:
        return text
    return _NON_ASCII.sub(_escape, text)


_encode_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _number(value: Any, allow_nan: bool) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            if not allow_nan:
                raise ValueError("NaN or Infinity is not JSON")
            return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if not value.is_finite():
        raise ValueError("NaN or Infinity is not JSON")
    return str(value)


def dumps(value: Any, *, ensure_ascii: bool = True, sort_keys: bool = False, allow_nan: bool = True) -> str:
    """Compact JSON text of a decoded value, Decimals as their digits; iterative (any depth).

    With ensure_ascii=False and sort_keys=True, the text equals ``json.dumps(value,
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)`` for every
    value that encoder accepts; it also takes Decimal (written as its digits, never quoted).

    Args:
        value: a value as decode_json returns it.
        ensure_ascii: escape every character outside ASCII.
        sort_keys: object keys in sorted order.
        allow_nan: write NaN and Infinity (Python's extension) instead of raising.

    Returns:
        The JSON text.

    Raises:
        ValueError: NaN or Infinity with allow_nan=False.
        TypeError: a value that is not JSON (an object key that is not a string included).
    """
    encode = _encode_ascii if ensure_ascii else _encode_str
    out: list[str] = []
    stack: list[Any] = [value]
    literal = _Literal
    while stack:
        item = stack.pop()
        if type(item) is literal:
            out.append(item.text)
        elif isinstance(item, str):
            out.append(encode(item))
        elif item is None:
            out.append("null")
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif isinstance(item, int):
            out.append(int.__repr__(item))
        elif isinstance(item, float | Decimal):
            out.append(_number(item, allow_nan))
        elif isinstance(item, list | tuple):
            out.append("[")
            pending: list[Any] = [_CLOSE_LIST]
            for i in range(len(item) - 1, -1, -1):
                pending.append(item[i])
                if i:
                    pending.append(_COMMA)
            stack.extend(pending)
        elif isinstance(item, dict):
            pairs = list(item.items())
            for k, _ in pairs:
                if not isinstance(k, str):
                    raise TypeError(f"an object key must be a string, got a {type(k).__name__}")
            if sort_keys:
                pairs.sort(key=lambda kv: kv[0])
            out.append("{")
            pending = [_CLOSE_OBJECT]
            for i in range(len(pairs) - 1, -1, -1):
                k, v = pairs[i]
                pending.append(v)
                pending.append(_Literal(encode(k) + ":"))
                if i:
                    pending.append(_COMMA)
            stack.extend(pending)
        else:
            raise TypeError(f"a {type(item).__name__} is not a JSON value")
    return "".join(out)


@dataclass(frozen=True)
class _Literal:
    text: str


_COMMA = _Literal(",")
_CLOSE_LIST = _Literal("]")
_CLOSE_OBJECT = _Literal("}")


def canonical(value: Any) -> str:
    """The normalizer's canonical JSON: sorted keys, compact, UTF-8 kept, no NaN; Decimals as digits."""
    return dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)


def record_json(record: Any, raw: bytes | None) -> str:
    """The text a dead letter keeps: the record's own bytes as ASCII when known, else its value as ASCII JSON.

    Args:
        record: the decoded record (or an UndecodableRecord).
        raw: its bytes in the page, when known.

    Returns:
        ASCII text; JSON for every record that decoded.
    """
    if raw is not None:
        return ascii_text(raw)
    if isinstance(record, UndecodableRecord):
        return ascii_text(record.raw)
    try:
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return dumps(record)


# Splitting a list page into its records' bytes without decoding them (msgspec skips each record in C),
# and reading each record's id alone: what a re-read needs to find records it normalized before.
_SPLITTERS: dict[str, msgspec.json.Decoder[Any]] = {}
_ID_READERS: dict[str, msgspec.json.Decoder[Any]] = {}


class _IdOnly(msgspec.Struct):
    id: Any = None


def _splitter(list_key: str) -> msgspec.json.Decoder[Any]:
    found = _SPLITTERS.get(list_key)
    if found is None:
        page = msgspec.defstruct(
            "RawListPage", [(list_key, list[msgspec.Raw]), ("next_page_token", Any, None)]
        )
        found = _SPLITTERS[list_key] = msgspec.json.Decoder(page)
    return found


def split_list_body(raw: bytes, list_key: str) -> dict[str, Any] | None:
    """A list page as {list_key: each record's bytes (msgspec.Raw), "next_page_token": ...}, records not decoded.

    Args:
        raw: the body of a list response.
        list_key: the key of the records' array.

    Returns:
        The split body, or None when msgspec cannot split it (no such array, bytes that are not UTF-8,
        a record that is not JSON, ...): the caller then decodes the body whole (decode_list_body),
        which says what each record is.
    """
    if raw.startswith(_UTF8_BOM):
        return None
    try:
        page = _splitter(list_key).decode(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    return {list_key: getattr(page, list_key), "next_page_token": page.next_page_token}


def _id_text(value: Any) -> str | None:
    if type(value) is int:
        return int.__repr__(value) if value >= 0 else None
    if type(value) is str and value.isascii() and value.isdigit():
        return value
    return None


def record_ids(records: list[Any], raw: bytes, list_key: str) -> list[str | None]:
    """Each record's ``id`` as digits (a non-negative integer's, a string of digits), read without decoding the rest.

    Only a key to look a record up by (pipeline.raw_keys): an id this reads differently from the
    normalizer is not found, and the record takes the full path.

    Args:
        records: the page's records as split_list_body gave them.
        raw: the page's body.
        list_key: the key of the records' array.

    Returns:
        One id or None per record.
    """
    reader = _ID_READERS.get(list_key)
    if reader is None:
        page = msgspec.defstruct("IdListPage", [(list_key, list[_IdOnly])])
        reader = _ID_READERS[list_key] = msgspec.json.Decoder(page)
    try:
        found = getattr(reader.decode(raw), list_key)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        found = None
    if found is not None and len(found) == len(records):
        return [_id_text(r.id) for r in found]
    # a record that is not an object: read them one by one
    one = msgspec.json.Decoder(_IdOnly)
    ids: list[str | None] = []
    for record in records:
        try:
            ids.append(_id_text(one.decode(record).id))
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            ids.append(None)
    return ids
