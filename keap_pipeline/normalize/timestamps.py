"""Strict parsing of Keap's ISO-8601 date-times into UTC epoch microseconds (PostgreSQL's precision)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from keap_pipeline.normalize.errors import TimestampError

# Exactly date 'T' time, optional fraction, and a mandatory zone: 'Z' or +HH:MM / -HH:MM.
# re.ASCII: \d must not match other scripts' digits.  No date-only, no naive, no week dates:
# a time without a zone would have to be guessed.
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(?:Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
# The same shape, but only fractions that are exact in microseconds: the common case, one match.
EXACT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6}0*)?(?:Z|[+-]\d{2}:\d{2})",
    re.ASCII,
).fullmatch
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
fromisoformat = datetime.fromisoformat


def parse_instant_us(text: str) -> int:
    """Parse a Keap ISO-8601 date-time with a zone into microseconds since 1970-01-01 UTC.

    Accepted: ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)``.  A fraction finer than a
    microsecond is accepted only when the extra digits are zeros: PostgreSQL's timestamptz
    holds microseconds and Python would silently truncate the rest.  Leap seconds (":60")
    and impossible dates are rejected, not rolled over.

    Args:
        text: the date-time as Keap sent it.

    Returns:
        Microseconds since the Unix epoch, UTC.

    Raises:
        TimestampError: not that format, an impossible date or time, or sub-microsecond digits.
    """
    if EXACT(text) is not None:
        try:
            return (fromisoformat(text) - EPOCH) // MICROSECOND
        except ValueError as exc:
            raise TimestampError(f"{text!r} is not a valid date-time ({exc})") from None
    # Slow path, only to say precisely what is wrong.
    m = _ISO.fullmatch(text)
    if m is None:
        raise TimestampError(f"{text!r} is not an ISO-8601 date-time with a zone (Z or +HH:MM)")
    raise TimestampError(f"{text!r} is finer than a microsecond; storing it would truncate it")
