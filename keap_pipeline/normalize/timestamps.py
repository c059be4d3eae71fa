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
# The instants a stored timestamp can hold, as epoch microseconds: years 1 to 9999 in UTC (an
# offset can push a valid local time outside them, and no text form of such an instant is one
# PostgreSQL reads back as the same instant).
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // MICROSECOND
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // MICROSECOND
# fromisoformat's own words for a field out of range ("month must be in 1..12"); anything else
# it says (e.g. "Invalid isoformat string: '...'") quotes the text, which is customer data
_RULE = re.compile(r"[a-z][a-z0-9 .,()=+\-]*", re.ASCII)


def _rule(exc: ValueError) -> str:
    text = str(exc)
    if text.startswith("offset"):
        return "the offset is not between -24:00 and +24:00"  # the message repeats the offset
    return text if _RULE.fullmatch(text) and "isoformat" not in text else "a field is out of range"


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
        TimestampError: not that format, an impossible date or time, sub-microsecond digits, or
            outside the years 1 to 9999 in UTC. The message names the rule, never the text
            (it ends up in dead-letter reasons): it reads well after the field's name.
    """
    if EXACT(text) is not None:
        try:
            value = (fromisoformat(text) - EPOCH) // MICROSECOND
        except ValueError as exc:
            raise TimestampError(f"is not a valid date-time ({_rule(exc)})") from None
        if not MIN_US <= value <= MAX_US:
            raise TimestampError("is outside the years 1 to 9999 once converted to UTC")
        return value
    # Slow path, only to say precisely what is wrong.
    m = _ISO.fullmatch(text)
    if m is None:
        raise TimestampError("is not an ISO-8601 date-time with a zone (Z or +HH:MM)")
    raise TimestampError("is finer than a microsecond; storing it would truncate it")
