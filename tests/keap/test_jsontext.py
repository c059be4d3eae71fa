"""keap_pipeline.jsontext: exact numbers, lenient bytes, each record's own bytes in its page, ASCII JSON that decodes the same."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keap_pipeline import jsontext
from keap_pipeline.jsontext import (
    UndecodableRecord,
    ascii_text,
    canonical,
    decode_json,
    decode_list_body,
    dumps,
    list_spans,
    record_json,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)


def test_numbers_keep_every_digit() -> None:
    body = b'{"a":0.1,"b":12.50,"c":1E400,"d":0.1000000000000000000001,"e":-0.0,"f":' + b"7" * 4500 + b',"g":18446744073709551617}'
    v = decode_json(body)
    assert v["a"] == 0.1 and type(v["a"]) is float
    assert v["b"] == Decimal("12.50") and str(v["b"]) == "12.50"
    assert v["c"] == Decimal("1E+400") and v["d"] == Decimal("0.1000000000000000000001")
    assert str(v["e"]) == "-0.0"
    assert v["f"] == Decimal("7" * 4500)  # past CPython's int/str limit: a Decimal, not a failed page
    assert v["g"] == 2**64 + 1 and type(v["g"]) is int
    assert canonical(v) == '{"a":0.1,"b":12.50,"c":1E+400,"d":0.1000000000000000000001,"e":-0.0,"f":' + "7" * 4500 + ',"g":18446744073709551617}'


def test_bytes_that_are_not_utf8_become_lone_surrogates_not_an_error() -> None:
    assert decode_json(b'["a\xff", "\xed\xa0\xbd", "caf\xc3\xa9"]') == ["a\udcff", "\ud83d", "café"]
    assert decode_json(b'\xef\xbb\xbf["\xe9"]') == ["\udce9"]


def test_a_record_that_is_not_json_alone_is_isolated_and_a_broken_page_still_raises() -> None:
    body = b'{"contacts":[{"id":"1"},{"id":"2","x":"\\q"},' + b"[" * 4000 + b"]" * 4000 + b',{"id":"4"}],"next_page_token":"t"}'
    page = decode_list_body(body, "contacts")
    first, bad, deep, last = page["contacts"]
    assert (first, last, page["next_page_token"]) == ({"id": "1"}, {"id": "4"}, "t")
    assert isinstance(bad, UndecodableRecord) and bad.raw == b'{"id":"2","x":"\\q"}' and "Invalid \\escape" in bad.reason
    assert isinstance(deep, UndecodableRecord) and "deeper" in deep.reason
    for broken in (b'{"contacts":[{"id":"1"}], "next_page_token": nope}', b'{"contacts":[{"id":"1"},,]}', b'{"contacts":["unterminated]}'):
        with pytest.raises(ValueError):
            decode_list_body(broken, "contacts")


@SETTINGS
@given(st.lists(json_values, max_size=6), st.sampled_from(["", " ", "\n\t ", "\r\n"]), st.booleans())
def test_spans_are_each_records_own_bytes(records: list[Any], ws: str, ascii_only: bool) -> None:
    items = [json.dumps(r, ensure_ascii=ascii_only) for r in records]
    body = f'{{{ws}"other":[1,{{"contacts":[9]}}],{ws}"contacts"{ws}:{ws}[{ws}{(ws + "," + ws).join(items)}{ws}]{ws},"next_page_token":""}}'
    raw = body.encode("utf-8", "surrogatepass")
    spans = list_spans(raw, "contacts")
    assert spans is not None and [raw[s:e] for s, e in spans] == [i.encode("utf-8", "surrogatepass") for i in items]


@SETTINGS
@given(json_values, st.booleans())
def test_ascii_text_decodes_to_what_the_bytes_decode_to(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    text = ascii_text(raw)
    assert text.isascii() and "\x00" not in text
    assert json.loads(text) == decode_json(raw) == json.loads(raw)
    assert record_json(value, None).isascii() and json.loads(record_json(value, None)) == value


@SETTINGS
@given(json_values)
def test_dumps_and_canonical_equal_the_standard_encoder(value: Any) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
    assert canonical(value) == json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def test_dumps_writes_any_depth() -> None:
    deep: Any = [Decimal("1.10")]
    for _ in range(20_000):
        deep = [deep]
    assert dumps(deep) == "[" * 20_000 + "[1.10]" + "]" * 20_000


def _reference(raw: bytes) -> Any:
    """What decode_json gave before msgspec: json.loads with the exact hooks, bytes not UTF-8 as surrogates."""
    try:
        return jsontext._loads(raw)
    except UnicodeDecodeError:
        return jsontext._loads(jsontext.text_of(raw.removeprefix(b"\xef\xbb\xbf")))


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types at every depth (a float by its repr: -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return bool(a == b)


def _outcome(decode: Any, raw: bytes) -> Any:
    try:
        return ("value", decode(raw))
    except RecursionError:
        return ("error", "RecursionError")
    except ValueError as err:
        return ("error", "ValueError", str(err) if isinstance(err, json.JSONDecodeError) else "")


def _agree(raw: bytes) -> None:
    got, want = _outcome(decode_json, raw), _outcome(_reference, raw)
    assert got[0] == want[0], (raw[:200], got, want)
    assert _same(got[1], want[1]) if got[0] == "value" else got == want, (raw[:200], got, want)


# numbers as Keap may write them: every form JSON allows, and the big and long ones
number_texts = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)
texts = st.text() | st.sampled_from(["\ud800", "\udcff", "a\x00b", "\U0001f600", "\\", '"'])
raw_values = st.recursive(
    st.sampled_from(["null", "true", "false"])
    | number_texts
    | st.tuples(texts, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1])),
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.lists(st.tuples(texts, inner), max_size=4).map(
        lambda kvs: "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + v for k, v in kvs) + "}"
    ),
    max_leaves=12,
)


@SETTINGS
@given(raw_values, st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_decode_json_equals_json_loads_with_the_exact_hooks(text: str, ws: str) -> None:
    # a lone surrogate in a string is written as its UTF-8 form (bytes that are not UTF-8)
    _agree((ws + text + ws).encode("utf-8", "surrogatepass"))


@SETTINGS
@given(raw_values, st.lists(st.tuples(st.integers(min_value=0), st.binary(min_size=0, max_size=3)), max_size=3))
def test_decode_json_equals_json_loads_on_broken_bytes(text: str, edits: list[tuple[int, bytes]]) -> None:
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for at, new in edits:
        i = at % (len(raw) + 1)
        raw[i : i + len(new) % 2] = new
    _agree(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + b"9" * 3998 + b"]", b"[" + b"9" * 3999 + b"]", b"[-" + b"9" * 3999 + b"]", b"[" + b"9" * 4000 + b"]",
        b"[" + b"9" * 4299 + b"]", b"[" + b"9" * 4301 + b"]", b'["' + b"1" * 5000 + b'"]', b"[1." + b"0" * 5000 + b"]",
        b"x" * 1999 + b"[" + b"7" * 4100 + b"]", b"[NaN, Infinity, -Infinity]", b'["\\ud800"]', b'\xef\xbb\xbf{"a":1}',
        b'{"a":1,"b":2,"a":3}', b"[1E400, -0.0, 12.50, 0.1, 1e5, -0]", b"\xff\xfe[\x001\x00]\x00", b'["\xed\xa0\x80"]',
        b"[" * 3000 + b"]" * 3000, b"",
    ],
)
def test_decode_json_equals_json_loads_at_the_edges(raw: bytes) -> None:
    _agree(raw)
