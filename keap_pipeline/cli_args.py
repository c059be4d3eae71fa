"""Argument types of the keap-pipeline commands, shared by every command that takes a number.

A value out of range is argparse's error naming the option (exit status 2), before anything runs:
never a traceback from a settings class, a database error after a batch was attempted, or a run
that silently does nothing (a negative --limit claimed no item; `rollback --to -1` rolled back
everything).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer from `low` to `high` (inclusive; no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"{low} or more" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"{text!r}: must be {span}")
        return value

    parse.__name__ = "whole number"
    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
    return value


# the longest waits the commands take, as the Dagster configs bound them: a day, and an hour for one row lock
# (PostgreSQL's lock_timeout ends at 24.8 days; a longer --lock-timeout was a database error mid-run)
DAY_SECONDS = 86_400.0
HOUR_SECONDS = 3_600.0


def seconds(high: float = DAY_SECONDS) -> Callable[[str], float]:
    """A duration in seconds from 0 to `high` (the options that take one say what 0 means)."""

    def parse(text: str) -> float:
        value = _finite(text)
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be from 0 to {high:g} seconds")
        return value

    parse.__name__ = "seconds"
    return parse


def positive_seconds(high: float = DAY_SECONDS) -> Callable[[str], float]:
    """A duration in seconds, more than 0, at most `high`."""

    def parse(text: str) -> float:
        value = _finite(text)
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds, at most {high:g}")
        return value

    parse.__name__ = "positive seconds"
    return parse


def _fraction(text: str) -> float:
    percent = text.endswith("%")
    try:
        value = _finite(text[:-1] if percent else text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (0.02) or a percentage (2%)") from None
    return value / 100 if percent else value


def share(text: str) -> float:
    """A share from 0 to 1, or a percentage (2%)."""
    value = _fraction(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a share from 0 to 1 (or 0% to 100%)")
    return value


def share_below_one(text: str) -> float:
    """A share from 0 up to, not including, 1 (a reserve: some must be left to use)."""
    value = _fraction(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a share from 0 up to 1, 1 excluded (or 0% up to 100%)")
    return value


def positive_share(text: str) -> float:
    """A share above 0, up to 1 (a part of something that must get some)."""
    value = _fraction(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a share above 0, up to 1 (or above 0%, up to 100%)")
    return value
