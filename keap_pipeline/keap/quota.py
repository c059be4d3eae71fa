"""Reading Keap's x-keap-* throttle and quota response headers into one small state object."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True)
class QuotaState:
    """What the last response said about the remaining throttle (short window) and daily quota.

    Product and tenant figures are merged: the smaller ``available`` wins, since either limit
    stops us.
    """

    observed_at: float
    throttle_limit: int | None = None
    throttle_available: int | None = None
    throttle_window: float | None = None
    throttle_resets_at: datetime | None = None
    quota_limit: int | None = None
    quota_available: int | None = None
    quota_resets_at: datetime | None = None


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        log.warning("ignoring non-integer header %s", name)
        return None


def parse_expiry(value: str | None) -> datetime | None:
    """Parse an expiry header: epoch milliseconds (what Keap sends), epoch seconds, or ISO-8601.

    Args:
        value: the header value, or None.

    Returns:
        an aware UTC datetime, or None if absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            log.warning("ignoring unreadable expiry header value")
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # epoch milliseconds are > 1e11 for any date after 1973
    seconds = number / 1000.0 if number > 1e11 else number
    return datetime.fromtimestamp(seconds, UTC)


def _window(headers: Mapping[str, str], prefix: str) -> float | None:
    unit = headers.get(f"{prefix}-time-unit")
    if unit is None:
        return None
    interval = _int(headers, f"{prefix}-interval") or 1
    seconds = _UNIT_SECONDS.get(unit.strip().lower())
    return seconds * interval if seconds else None


def _min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def parse_quota_headers(headers: Mapping[str, str], observed_at: float) -> QuotaState | None:
    """Build a QuotaState from a response's headers.

    Args:
        headers: response headers (case-insensitive mapping, e.g. httpx.Headers).
        observed_at: the pacer clock's reading when the response arrived.

    Returns:
        the state, or None when the response carries no x-keap-* figures.
    """
    pt, tt = "x-keap-product-throttle", "x-keap-tenant-throttle"
    pq, tq = "x-keap-product-quota", "x-keap-tenant-quota"
    throttle_available = _min(_int(headers, f"{pt}-available"), _int(headers, f"{tt}-available"))
    quota_available = _min(_int(headers, f"{pq}-available"), _int(headers, f"{tq}-available"))
    if throttle_available is None and quota_available is None:
        return None
    # the limit that goes with the tighter of the two throttles
    product_avail = _int(headers, f"{pt}-available")
    use_tenant = product_avail is None or (
        _int(headers, f"{tt}-available") is not None and throttle_available != product_avail
    )
    tp = tt if use_tenant else pt
    qp = pq if _int(headers, f"{pq}-available") == quota_available else tq
    return QuotaState(
        observed_at=observed_at,
        throttle_limit=_int(headers, f"{tp}-limit"),
        throttle_available=throttle_available,
        throttle_window=_window(headers, tp),
        throttle_resets_at=parse_expiry(headers.get(f"{tp}-expiry-time")),
        quota_limit=_int(headers, f"{qp}-limit"),
        quota_available=quota_available,
        quota_resets_at=parse_expiry(headers.get(f"{qp}-expiry-time")),
    )
