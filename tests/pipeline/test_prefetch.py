"""prefetch: order kept, errors raised where they happen, the reader stops when the consumer does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from keap_pipeline.pipeline.prefetch import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_an_error_in_the_source_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("quota spent")

    seen = []
    with pytest.raises(RuntimeError, match="quota spent"):
        for item in prefetch(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_reader_stays_at_most_depth_ahead_and_stops_with_the_consumer() -> None:
    produced = []

    def source() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(produced) <= 4, "read ahead by at most depth (+1 in hand, +1 being put)"
    stream.close()
    time.sleep(0.3)
    assert len(produced) <= 5
    assert not [t for t in threading.enumerate() if t.name == "keap-prefetch"]
