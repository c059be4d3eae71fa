"""decode_json: lossless, and the garbage collector is back on afterwards, error or not."""

from __future__ import annotations

import gc

import pytest

from keap_pipeline.keap.client import decode_json


def test_big_integers_and_decimals_are_kept_exactly() -> None:
    body = b'{"a": 123456789012345678901234567890, "b": -9223372036854775809, "c": 0.1, "d": "Zo\\u00eb"}'
    assert decode_json(body) == {"a": 123456789012345678901234567890, "b": -9223372036854775809, "c": 0.1, "d": "Zoë"}


@pytest.mark.parametrize("body", [b'{"contacts": []}', b"not json"])
def test_collector_state_is_restored(body: bytes) -> None:
    assert gc.isenabled()
    try:
        decode_json(body)
    except ValueError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        decode_json(b"[]")
        assert not gc.isenabled(), "a caller's disabled collector stays disabled"
    finally:
        gc.enable()
