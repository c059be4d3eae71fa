"""Read ahead: fetch the next Keap pages in a thread while the current batch loads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(source: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer.

    While the database works on a batch (the pipeline thread waits on its socket, releasing the
    GIL), the next pages are fetched and decoded. An exception in `source` is raised in the
    consumer at the point it would have been; stopping early (close(), an exception in the
    consumer) stops the reader after the item it is on. Memory stays bounded: `depth` pages.

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
            for item in source:
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
