"""keap_pipeline.jsontext: exact numbers, lenient bytes, each record's own bytes in its page, ASCII JSON that decodes the same."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
