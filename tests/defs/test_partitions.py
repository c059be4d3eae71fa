"""The partition set of the timed assets: its start, the window a range reads, and what an incremental run covers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import MonthlyPartitionsDefinition

from keap_pipeline.defs.partitions import (
    DEFAULT_PARTITIONS_START,
    PARTITIONS,
    PARTITIONS_START_ENV,
    incremental_range,
    key_of,
    partition_window_text,
    partitions_start,
    range_text,
    read_window,
)

SET = MonthlyPartitionsDefinition(start_date="2019-01", fmt="%Y-%m", timezone="UTC", end_offset=1)
NOW = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def test_the_start_comes_from_the_environment_with_a_default() -> None:
    assert partitions_start({}) == DEFAULT_PARTITIONS_START == "2010-01"
    assert partitions_start({PARTITIONS_START_ENV: " 2019-01 "}) == "2019-01"
    assert partitions_start({PARTITIONS_START_ENV: ""}) == DEFAULT_PARTITIONS_START
    for bad in ("2019-01-01", "2019", "Jan 2019", "2019-13"):
        with pytest.raises(ValueError, match=rf"{PARTITIONS_START_ENV} must be a month as YYYY-MM .* {bad!r}"):
            partitions_start({PARTITIONS_START_ENV: bad})


def test_the_partitions_are_months_from_the_start_up_to_the_current_one() -> None:
    # tests/conftest.py sets the sandbox's start (2019-01), as the local stack does
    keys = PARTITIONS.get_partition_keys(current_time=NOW)
    assert keys[0] == partitions_start() and keys[-1] == "2026-11"
    first = datetime.strptime(keys[0], "%Y-%m")
    assert len(keys) == (NOW.year - first.year) * 12 + NOW.month - first.month + 1  # one a month, none missing


def test_a_range_from_the_first_partition_reads_all_earlier_history_too() -> None:
    march = SET.time_window_for_partition_key("2024-03")
    assert read_window(march.start, march.end, SET) == (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    first = SET.time_window_for_partition_key("2019-01")
    assert read_window(first.start, march.end, SET) == (None, datetime(2024, 4, 1, tzinfo=UTC))
    assert partition_window_text("2024-03", SET) == "updated 2024-03-01 .. 2024-04-01 (end exclusive)"
    assert partition_window_text("2019-01", SET).startswith("updated before 2019-02-01 (the first partition")


def test_a_time_belongs_to_its_month_and_anything_older_to_the_first() -> None:
    assert key_of(datetime(2024, 3, 31, 23, 59, tzinfo=UTC), SET) == "2024-03"
    assert key_of(datetime(2024, 4, 1, tzinfo=UTC), SET) == "2024-04"
    assert key_of(datetime(2012, 5, 1, tzinfo=UTC), SET) == "2019-01"


def test_the_range_label_names_the_range() -> None:
    assert range_text(["2024-01", "2024-02", "2024-03"]).startswith("2024-01 .. 2024-03 (3 monthly partitions): the range_*")
    assert range_text(["2024-01"]).startswith("2024-01 (1 monthly partition)")


@pytest.mark.parametrize(
    ("cursors", "previous_end", "expected"),
    [
        # never synced: the run is a full load, it covers every partition
        ((None,), None, ("2019-01", "2026-11")),
        ((None, datetime(2026, 11, 2, tzinfo=UTC)), "2026-11", ("2019-01", "2026-11")),
        # from the cursor's month on, when no earlier incremental run read the months since
        ((datetime(2024, 5, 3, tzinfo=UTC),), None, ("2024-05", "2026-11")),
        # a cursor months old (nothing changed), months read by the previous run after they ended are final
        ((datetime(2024, 5, 3, tzinfo=UTC),), "2026-11", ("2026-11", "2026-11")),
        ((datetime(2024, 5, 3, tzinfo=UTC),), "2026-09", ("2026-09", "2026-11")),
        # a cursor newer than the previous run (a CLI sync moved it): from the cursor
        ((datetime(2026, 10, 30, tzinfo=UTC),), "2026-09", ("2026-10", "2026-11")),
        # several entities: the earliest
        ((datetime(2026, 11, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)), None, ("2025-01", "2026-11")),
        # no timed entity: the current month
        ((), None, ("2026-11", "2026-11")),
    ],
)
def test_an_incremental_run_covers_what_it_makes_true(
    cursors: tuple[datetime | None, ...], previous_end: str | None, expected: tuple[str, str]
) -> None:
    assert incremental_range(cursors, previous_end, NOW, SET) == expected
