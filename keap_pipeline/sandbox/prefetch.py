"""PagePrefetcher: render the next page of a listing while the client is still reading this one."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("keap_pipeline.sandbox")

# (entity, the query without page_token, page_token, data version)
PageKey = tuple[str, tuple[tuple[str, str], ...], str, int]
Render = Callable[[], tuple[bytes, str]]


class PagePrefetcher:
    """A paging client asks for page N+1 right after page N: its token is known when page N is
    answered, so one worker renders it meanwhile (on the server's otherwise idle core when the
    sandbox runs in its own process). At most `capacity` pages are kept, and a page rendered
    before any change to the data is never served after it (the data version is in the key).
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._pages: OrderedDict[PageKey, Future[tuple[bytes, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._deferred = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keap-sandbox-prefetch")
        self.hits = 0
        self.misses = 0

    def take(self, key: PageKey) -> Future[tuple[bytes, str]] | None:
        """The prefetched (or still rendering) page for this key, removed from the cache.

        Args:
            key: the sort key / cache key.

        Returns:
            The future of the page, or None.
        """
        with self._lock:
            future = self._pages.pop(key, None)
            if future is None:
                self.misses += 1
            else:
                self.hits += 1
            return future

    def defer(self, key: PageKey, render: Render) -> None:
        """Remember a page to prefetch once this thread has sent its answer (start_deferred):

        Args:
            key: the sort key / cache key.
            render: renders the page: () -> (body, next_page_token).
        rendering while the answer is still being written would fight the writer for the GIL."""
        self._deferred.job = (key, render)

    def start_deferred(self) -> None:
        """Schedule the page this thread deferred, if any."""
        job = getattr(self._deferred, "job", None)
        if job is not None:
            self._deferred.job = None
            self.schedule(*job)

    def schedule(self, key: PageKey, render: Render) -> None:
        """Start rendering a page that will probably be asked for next.

        Args:
            key: the sort key / cache key.
            render: renders the page: () -> (body, next_page_token).
        """
        with self._lock:
            if key in self._pages:
                return
            self._pages[key] = self._pool.submit(render)
            while len(self._pages) > self.capacity:
                _, dropped = self._pages.popitem(last=False)
                dropped.cancel()

    def close(self) -> None:
        """Stop the worker and drop what it rendered."""
        with self._lock:
            for future in self._pages.values():
                future.cancel()
            self._pages.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
