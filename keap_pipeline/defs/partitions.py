"""The time partitions of the Keap assets: months of Keap's update time, and which of them a run covers.

A partition ``2024-03`` stands for the records whose last Keap update falls in March 2024 (UTC); the
first partition also stands for everything updated before it, so no record is outside the set
whatever the configured start. Records only ever move forward in time (an update gives them a new
update time), so a month that had ended when a run read it stays loaded: only the current month, and
months no run has read since they ended, change.

Why months, and why the start is read from the environment: docs/architecture.md ("Partitions").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from dagster import MonthlyPartitionsDefinition

PARTITIONS_START_ENV = "KEAP_PIPELINE_PARTITIONS_START"
# Keap accounts hold history from long before this pipeline; a month too early costs one empty
# partition, a month too late nothing (the first partition holds everything before it).
DEFAULT_PARTITIONS_START = "2010-01"
KEY_FORMAT = "%Y-%m"


def partitions_start(environ: Mapping[str, str] = os.environ) -> str:
    """The first partition's month: KEAP_PIPELINE_PARTITIONS_START, else DEFAULT_PARTITIONS_START.

    Read once, when the code location loads (the partition set is part of the definitions: the UI
    lists it and a backfill's keys are checked against it before any run starts).

    Args:
        environ: where to look (the process environment).

    Returns:
        A month as YYYY-MM.

    Raises:
        ValueError: the variable is set but is not a month as YYYY-MM.
    """
    value = environ.get(PARTITIONS_START_ENV, "").strip() or DEFAULT_PARTITIONS_START
    try:
        parsed = datetime.strptime(value, KEY_FORMAT)
    except ValueError:
        raise ValueError(
            f"{PARTITIONS_START_ENV} must be a month as YYYY-MM (the month of the account's oldest Keap "
            f"update, e.g. 2019-01); it is {value!r}"
        ) from None
    return parsed.strftime(KEY_FORMAT)


PARTITIONS = MonthlyPartitionsDefinition(
    start_date=partitions_start(), fmt=KEY_FORMAT, timezone="UTC", end_offset=1
)


def key_of(moment: datetime, partitions: MonthlyPartitionsDefinition = PARTITIONS) -> str:
    """The partition holding records updated at ``moment`` (the first one for anything before it)."""
    key = moment.astimezone(UTC).strftime(KEY_FORMAT)
    first = partitions.get_first_partition_key()
    return max(key, first) if first else key


def read_window(
    start: datetime, end: datetime, partitions: MonthlyPartitionsDefinition = PARTITIONS
) -> tuple[datetime | None, datetime]:
    """What a run over the partitions from ``start`` to ``end`` reads: (since, until), since None from the first.

    Args:
        start: the first partition's start.
        end: the last partition's end.
        partitions: the partition set.

    Returns:
        since (inclusive; None when the range begins with the first partition, which also holds
        everything updated before it) and until (exclusive), both UTC.
    """
    opens = start.astimezone(UTC) <= partitions.start.astimezone(UTC)
    return (None if opens else start.astimezone(UTC)), end.astimezone(UTC)


def partition_window_text(key: str, partitions: MonthlyPartitionsDefinition = PARTITIONS) -> str:
    """The records a partition stands for, in words (UTC), e.g. ``updated 2024-03-01 .. 2024-04-01``."""
    window = partitions.time_window_for_partition_key(key)
    end = window.end.astimezone(UTC).date().isoformat()
    if key == partitions.get_first_partition_key():
        return f"updated before {end} (the first partition also holds all earlier history)"
    return f"updated {window.start.astimezone(UTC).date().isoformat()} .. {end} (end exclusive)"


def range_text(keys: Iterable[str]) -> str:
    """The run's range in words, saying that the range_* figures are the whole range's."""
    keys = list(keys)
    span = keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"
    noun = "partition" if len(keys) == 1 else "partitions"
    return (
        f"{span} ({len(keys)} monthly {noun}): the range_* figures are this run's, over the whole range, "
        "not this partition's"
    )


def incremental_range(
    cursors: Iterable[datetime | None],
    previous_end: str | None,
    now: datetime,
    partitions: MonthlyPartitionsDefinition = PARTITIONS,
) -> tuple[str, str]:
    """The partitions an incremental run (from each entity's cursor to now) loads, as (first, last) keys.

    An entity without a cursor is loaded from the beginning: the run covers every partition. One
    with a cursor is read from it, so the run covers the cursor's month to the current one, less
    the months that the previous successful incremental run of the same job had already read
    after they ended (they cannot have changed since). That keeps a tick at one or two partitions
    when a rarely changing entity (tags) has a cursor months old.

    Args:
        cursors: each timed entity's incremental cursor (None: never synced).
        previous_end: the last partition of the previous successful incremental run of this job,
            None when there is none (or it is not a key of this partition set).
        now: the tick.
        partitions: the partition set.

    Returns:
        The first and the last partition key (the last is the current month's).
    """
    last = key_of(now, partitions)
    first = partitions.get_first_partition_key() or last
    starts = []
    for cursor in cursors:
        if cursor is None:
            starts.append(first)
        else:
            start = key_of(cursor, partitions)
            starts.append(max(start, previous_end) if previous_end else start)
    return min([*starts, last]), last
