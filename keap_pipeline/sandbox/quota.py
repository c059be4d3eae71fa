"""Quota: Keap's per-second / per-minute / per-day request limits, its x-keap-* headers, and 429s."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from keap_pipeline.sandbox.config import RateLimits


class Quota:
    """Fixed-window counters (second, minute, UTC day) like Keap's spike arrest, throttle and quota."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._second = (0, 0)  # (window, used)
        self._minute = (0, 0)
        self._day = (0, 0)

    def reset(self) -> None:
        """Forget all usage (tests)."""
        with self._lock:
            self._second = self._minute = self._day = (0, 0)

    def take(self, now: float | None = None) -> tuple[bool, int, dict[str, str]]:
        """Count one request if the limits allow it.

        Args:
            now: epoch seconds (default the clock).

        Returns:
            (allowed, seconds until a retry can succeed, the x-keap-* headers after this request).
        """
        now = time.time() if now is None else now
        sec, minute, day = int(now), int(now // 60), int(now // 86_400)
        lim = self.limits
        with self._lock:
            s_used = self._second[1] if self._second[0] == sec else 0
            m_used = self._minute[1] if self._minute[0] == minute else 0
            d_used = self._day[1] if self._day[0] == day else 0
            retry: float = 0
            if lim.per_day is not None and d_used >= lim.per_day:
                retry = (day + 1) * 86_400 - now
            elif lim.per_minute is not None and m_used >= lim.per_minute:
                retry = (minute + 1) * 60 - now
            elif lim.per_second is not None and s_used >= lim.per_second:
                retry = (sec + 1) - now
            allowed = retry == 0
            if allowed:
                s_used, m_used, d_used = s_used + 1, m_used + 1, d_used + 1
                self._second, self._minute, self._day = (sec, s_used), (minute, m_used), (day, d_used)
        headers = self._headers(m_used, d_used, day)
        return allowed, max(1, int(retry + 0.999)) if not allowed else 0, headers

    def peek(self, now: float | None = None) -> dict[str, str]:
        """The x-keap-* headers as they stand, without counting a request (401s, unknown paths).

        Args:
            now: epoch seconds (default the clock).

        Returns:
            The x-keap-* headers.
        """
        now = time.time() if now is None else now
        minute, day = int(now // 60), int(now // 86_400)
        with self._lock:
            m_used = self._minute[1] if self._minute[0] == minute else 0
            d_used = self._day[1] if self._day[0] == day else 0
        return self._headers(m_used, d_used, day)

    def _headers(self, m_used: int, d_used: int, day: int) -> dict[str, str]:
        # a limit that is switched off has no headers, as a Keap without that limit would send none
        # (advertising a made-up figure showed up as "quota_left 99999999" in the runs' metadata)
        m_limit, d_limit = self.limits.per_minute, self.limits.per_day
        expiry = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day + 1)
        headers: dict[str, str] = {}
        for scope in ("product", "tenant"):
            if m_limit is not None:
                headers.update({
                    f"x-keap-{scope}-throttle-limit": str(m_limit),
                    f"x-keap-{scope}-throttle-available": str(max(0, m_limit - m_used)),
                    f"x-keap-{scope}-throttle-used": str(m_used),
                    f"x-keap-{scope}-throttle-time-unit": "minute",
                    f"x-keap-{scope}-throttle-interval": "1",
                })
            if d_limit is not None:
                headers.update({
                    f"x-keap-{scope}-quota-limit": str(d_limit),
                    f"x-keap-{scope}-quota-available": str(max(0, d_limit - d_used)),
                    f"x-keap-{scope}-quota-used": str(d_used),
                    f"x-keap-{scope}-quota-time-unit": "day",
                    f"x-keap-{scope}-quota-interval": "1",
                    f"x-keap-{scope}-quota-expiry-time": expiry.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                })
        return headers
