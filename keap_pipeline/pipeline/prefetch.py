"""Read ahead: fetch the next Keap pages in a thread while the current batch loads."""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _collector_paused(source: Iterator[T]) -> Iterator[T]:
    """The items of `source`, the cyclic garbage collector paused while each one is made.

    Making an item here is fetching, decoding and normalizing a page: some 20,000 tracked objects
    (the decoded records) that live until the page is normalized and die by reference count, as
    the next page's are made. With the collector running, those objects were scanned by collector
    passes that found nothing to free: 367 passes and about 1.1 s of a 200,000-contact re-read
    (docs/benchmarks.md, "Re-reading unchanged records"). Paused, they are freed before a pass sees
    them, since the collector's count drops as tracked objects are freed. The pause is process-wide
    but short (one item); between items the collector runs as usual, for every thread.
    """
    items = iter(source)
    while True:
        enabled = gc.isenabled()
        gc.disable()
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            if enabled:
                gc.enable()
        yield item


def prefetch(source: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer.

    While the database works on a batch (the pipeline thread waits on its socket, releasing the
    GIL), the next pages are fetched and decoded. An exception in `source` is raised in the
    consumer at the point it would have been; stopping early (close(), an exception in the
    consumer) stops the reader after the item it is on. Memory stays bounded: `depth` pages.
    The cyclic garbage collector is paused while each item is made (_collector_paused).

    Args:
        source: the iterator to read ahead (used by the reader thread only from now on).
        depth: how many items may wait.

    Yields:
        The items of `source`, in order.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for item in _collector_paused(source):
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            items.put(_Failed(err))

    thread = threading.Thread(target=reader, name="keap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=30)
