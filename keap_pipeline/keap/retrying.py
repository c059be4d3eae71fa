"""How long to wait before retrying a failed Keap request, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from keap_pipeline.keap.errors import KeapArgumentError


@dataclass
class RetryPolicy:
    """A budget for retries of one request: at most ``max_retries`` and ``max_wait`` seconds.

    Backoff for 5xx, timeouts and dropped connections is exponential with full jitter
    (uniform between 0 and min(max_delay, base_delay * 2**attempt)), so many clients do not
    retry in lockstep.
    """

    max_retries: int = 5
    max_wait: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_wait < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise KeapArgumentError("RetryPolicy values must not be negative")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), full jitter.

        Args:
            attempt: how many retries came before this one.

        Returns:
            the delay.
        """
        return self.rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


def is_refused(exc: BaseException) -> bool:
    """Whether a transport error is a refused connection (ECONNREFUSED anywhere in its chain of causes).

    A refusal is an answer, not slowness: the host said at once that nothing listens on that
    port, and waiting does not change that. Other failures to connect (an unreachable network,
    a name that does not resolve yet, a reset) may pass and stay retried.

    Args:
        exc: the exception httpx raised.

    Returns:
        True for a refused connection.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait as a Retry-After header says: delta-seconds or an HTTP-date.

    Args:
        value: the header value, or None.
        now: the current time for HTTP-dates (default: now, UTC).

    Returns:
        seconds (never negative), or None if absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
