"""Client-side pacing within Keap's per-second, per-minute and per-day limits, shared per credential."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from keap_pipeline.keap.errors import KeapArgumentError, KeapQuotaExhausted
from keap_pipeline.keap.quota import QuotaState, parse_quota_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimits:
    """Request limits of one credential. The day resets at 00:00 UTC."""

    per_second: int = 10
    per_minute: int = 240
    per_day: int = 30_000

    def __post_init__(self) -> None:
        for name in ("per_second", "per_minute", "per_day"):
            if getattr(self, name) < 1:
                raise KeapArgumentError(f"RateLimits.{name} must be at least 1")

    @classmethod
    def personal_key(cls) -> RateLimits:
        """A Personal Access Token or Service Account Key: 10/s, 240/min, 30,000/day."""
        return cls(10, 240, 30_000)

    @classmethod
    def oauth_app(cls) -> RateLimits:
        """An OAuth2 key/secret pair: 25/s spike arrest, 1500/min, 150,000/day."""
        return cls(25, 1_500, 150_000)


def next_utc_midnight(epoch: float) -> datetime:
    """The 00:00 UTC that follows the instant ``epoch`` (seconds)."""
    day = datetime.fromtimestamp(epoch, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Pacer:
    """Blocks before each request just long enough to stay within the limits.

    Thread-safe; one Pacer may serve several clients that use the same credential (see
    ``Pacer.shared``). Sliding one-second and one-minute windows plus a UTC-day counter are
    kept locally; the x-keap-* headers of each response (fed in through ``observe``) tighten
    this when other processes share the credential: below ``low_water`` of the throttle the
    pacer spaces requests out more the less is left, at 0 it waits for the window to pass, and a
    daily quota of 0 raises KeapQuotaExhausted.
    """

    _registry: dict[str, Pacer] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        enabled: bool = True,
        low_water: float = 0.1,
    ) -> None:
        """Configure the pacer.

        Args:
            limits: the credential's limits (default: a personal key's).
            clock: wall-clock seconds since the epoch (the day boundary is UTC), injectable.
            sleep: how to wait, injectable.
            enabled: False turns local pacing off (benchmarks); a server-reported spent
                daily quota is still honoured.
            low_water: fraction of the throttle below which requests are spread out.
        """
        self.limits = limits or RateLimits.personal_key()
        self.enabled = enabled
        self.low_water = low_water
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._second: deque[float] = deque()
        self._minute: deque[float] = deque()
        self._day_end = next_utc_midnight(clock())
        self._day_count = 0
        self._last_sent: float | None = None
        self._quota: QuotaState | None = None
        self._sending = threading.local()  # the stamp of the request this thread has in flight
        self._observed_for: float | None = None  # the stamp of the request whose answer gave self._quota
        self.waited = 0.0

    @classmethod
    def shared(cls, fingerprint: str, limits: RateLimits, **kwargs: object) -> Pacer:
        """The one Pacer for a credential, created on first use.

        Args:
            fingerprint: a one-way hash of the credential (``auth.fingerprint``), never the
                credential itself.
            limits: the limits to use if the pacer is created now.
            **kwargs: passed to the constructor if the pacer is created now.

        Returns:
            the shared pacer.
        """
        with cls._registry_lock:
            pacer = cls._registry.get(fingerprint)
            if pacer is None:
                pacer = cls(limits, **kwargs)  # type: ignore[arg-type]
                cls._registry[fingerprint] = pacer
            return pacer

    @property
    def quota(self) -> QuotaState | None:
        """The latest x-keap-* state observed, or None if no response carried it."""
        return self._quota

    @property
    def day_count(self) -> int:
        """Requests sent through this pacer since 00:00 UTC."""
        return self._day_count

    def observe(self, headers: Mapping[str, str]) -> QuotaState | None:
        """Take in the x-keap-* headers of a response.

        Args:
            headers: the response headers.

        Returns:
            the parsed state (None when the response had none; the previous state is kept).
        """
        state = parse_quota_headers(headers, self._clock())
        # the request this answers (settle kept its stamp): with several threads sending, answers arrive
        # out of order, and an answer to a request let go earlier than the one the figures in hand answer
        # is older news (Keap counted fewer requests when it wrote it); taking it would undo the requests
        # counted since, and the pacer would send into a window Keap sees as full
        answered = getattr(self._sending, "answered", None)
        self._sending.answered = None
        if state is not None:
            with self._lock:
                if answered is None or self._observed_for is None or answered >= self._observed_for:
                    self._quota = state
                    if answered is not None:
                        self._observed_for = answered
        return state

    def acquire(self) -> float:
        """Wait until one more request fits, then count it.

        Returns:
            seconds waited.

        Raises:
            KeapQuotaExhausted: the daily quota is spent (locally counted or as Keap reported).
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._check_day(now)
                wait = self._wait_needed(now) if self.enabled else 0.0
                if wait <= 0:
                    self._record(now)
                    self.waited += waited
                    return waited
            log.debug("pacing: waiting %.3fs", wait)
            self._sleep(wait)
            waited += wait

    def settle(self) -> None:
        """The request this thread acquired for has been answered: count it at the answer's time.

        Keap counts a request when it arrives, which is after the pacer let it go (building it,
        the network, a scheduler that paused this process in between); counted at the answer it
        is counted no earlier than Keap counted it, so a window the pacer sees as full is never
        one Keap sees as overfull (issue 14: no 429 from pacing at the windows' edges). A thread
        that never settles keeps its requests counted when they were let go.
        """
        stamp = getattr(self._sending, "stamp", None)
        self._sending.answered = stamp  # for observe: which request the answer's figures follow
        if stamp is None:
            return
        self._sending.stamp = None
        with self._lock:
            now = max(self._clock(), stamp)
            for window in (self._second, self._minute):
                try:
                    window.remove(stamp)
                except ValueError:
                    continue  # the window moved past it already
                window.append(now)

    def _check_day(self, now: float) -> None:
        if datetime.fromtimestamp(now, UTC) >= self._day_end:
            self._day_end = next_utc_midnight(now)
            self._day_count = 0
        quota = self._quota
        if quota is not None and quota.quota_available is not None and quota.quota_available <= 0:
            resets = quota.quota_resets_at or self._day_end
            if resets.timestamp() > now:
                raise quota_exhausted(resets, "Keap reports the daily quota spent")
        if self.enabled and self._day_count >= self.limits.per_day:
            raise quota_exhausted(
                self._day_end, f"the daily limit of {self.limits.per_day} requests is used up"
            )

    def _wait_needed(self, now: float) -> float:
        while self._second and self._second[0] <= now - 1.0:
            self._second.popleft()
        while self._minute and self._minute[0] <= now - 60.0:
            self._minute.popleft()
        wait = 0.0
        if len(self._second) >= self.limits.per_second:
            wait = max(wait, self._second[0] + 1.0 - now)
        if len(self._minute) >= self.limits.per_minute:
            wait = max(wait, self._minute[0] + 60.0 - now)
        return max(wait, self._header_wait(now))

    def _header_wait(self, now: float) -> float:
        quota = self._quota
        if quota is None or quota.throttle_available is None:
            return 0.0
        window = quota.throttle_window or 60.0
        if now - quota.observed_at >= window:
            return 0.0  # the window those figures described is over
        available = quota.throttle_available
        if available <= 0:
            if quota.throttle_resets_at is not None:
                return max(0.0, quota.throttle_resets_at.timestamp() - now)
            return quota.observed_at + window - now
        limit = quota.throttle_limit or self.limits.per_minute
        if available < self.low_water * limit and self._last_sent is not None:
            # below the low-water mark space requests out, more the less is left: at the mark
            # this is the limit's average rate (window / limit), at 1 left it is low_water of a
            # window, so the last few never burst into a 429 and the key stays usable for others
            return self._last_sent + window * self.low_water / available - now
        return 0.0

    def _record(self, now: float) -> None:
        if self.enabled:
            self._second.append(now)
            self._minute.append(now)
            self._sending.stamp = now
        # unpaced: no windows to keep (they were never trimmed, grew with every request, and made
        # settle's removal scan all of them: quadratic in a long run)
        self._day_count += 1
        self._last_sent = now
        quota = self._quota
        if quota is not None and self.enabled:
            # count our own request against the last reported figures until the next response
            self._quota = QuotaState(
                observed_at=quota.observed_at,
                throttle_limit=quota.throttle_limit,
                throttle_available=None if quota.throttle_available is None else quota.throttle_available - 1,
                throttle_window=quota.throttle_window,
                throttle_resets_at=quota.throttle_resets_at,
                quota_limit=quota.quota_limit,
                quota_available=quota.quota_available,
                quota_resets_at=quota.quota_resets_at,
            )


def quota_exhausted(resets_at: datetime, reason: str, status: int | None = None) -> KeapQuotaExhausted:
    """Build the error the pipeline catches to save its cursor and stop cleanly.

    Args:
        resets_at: when requests will be accepted again.
        reason: what told us the quota is spent.
        status: the HTTP status, when a response said so.

    Returns:
        the exception (not raised).
    """
    return KeapQuotaExhausted(
        f"{reason}; no more Keap requests until {resets_at.isoformat()} "
        "(00:00 UTC): the run stops here and can resume after the reset",
        resets_at=resets_at,
        status=status,
    )
