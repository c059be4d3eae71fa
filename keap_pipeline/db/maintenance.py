"""Database maintenance shared by Dagster and the CLI: audit partitions ahead, DEFAULT rows home, retention, VACUUM, queue history."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg
from psycopg import sql

from keap_pipeline.db.errors import DatabaseError

log = logging.getLogger(__name__)

# The tables 15-partitioning.sql's pg_cron job vacuums, in its order.
SYNC_TABLES: tuple[str, ...] = (
    "sync_contacts",
    "sync_orders",
    "sync_tags",
    "sync_subscriptions",
    "sync_products",
    "sync_status",
    "sync_conflicts",
    "sync_queue",
)
# create_monthly_partition always makes the month it is given and the three after it.
FUNCTION_WINDOW = 4
DEFAULT_LOCK_TIMEOUT = "5s"
# the widest the partition chore goes (the CLI and the Dagster config take these bounds): a partition per
# month ahead, ten years at most; a retention up to 9999 months (833 years: "keep everything" is no value)
MAX_MONTHS_AHEAD = 120
MAX_RETENTION_MONTHS = 9999
# pg_cron job names scheduled by 15-partitioning.sql.
CRON_CREATE_PARTITIONS = "keap-pipeline:create-partitions"
CRON_VACUUM_ANALYZE = "keap-pipeline:vacuum-analyze"


class MaintenanceError(DatabaseError):
    """A maintenance request is invalid (unknown table, negative months, malformed lock_timeout)."""


def _month(d: date, offset: int = 0) -> date:
    total = d.year * 12 + (d.month - 1) + offset
    return date(total // 12, total % 12 + 1, 1)


def _name(month: date) -> str:
    return f"sync_audit_log_{month:%Y_%m}"


@dataclass
class PartitionReport:
    """What audit_partitions did (or, with dry_run, would do)."""

    dry_run: bool
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_moved: int = 0
    rows_left_in_default: int = 0
    newest_month: str | None = None
    oldest_month: str | None = None

    def lines(self) -> list[str]:
        """The report in words, the same for the CLI and the Dagster log."""
        verb = "would be" if self.dry_run else "were"
        return [
            f"partitions created: {len(self.created)}" + (f" ({', '.join(self.created)})" if self.created else ""),
            f"partitions dropped: {len(self.dropped)}" + (f" ({', '.join(self.dropped)})" if self.dropped else ""),
            f"rows moved out of DEFAULT: {self.rows_moved}",
            f"rows left in DEFAULT: {self.rows_left_in_default}",
            f"newest month: {self.newest_month or '-'}, oldest month: {self.oldest_month or '-'}",
        ] + ([f"dry run: nothing was changed; the figures say what {verb} done"] if self.dry_run else [])


def _partition_months(conn: psycopg.Connection) -> list[date]:
    rows = conn.execute(
        "select c.relname"
        " from pg_catalog.pg_inherits as i"
        " join pg_catalog.pg_class as c on c.oid = i.inhrelid"
        " join pg_catalog.pg_namespace as n on n.oid = c.relnamespace"
        " where i.inhparent = 'public.sync_audit_log'::regclass"
        "   and n.nspname = 'keap_pipeline'"
        "   and c.relname ~ '^sync_audit_log_[0-9]{4}_[0-9]{2}$'"
    ).fetchall()
    return sorted(date(int(r[0][-7:-3]), int(r[0][-2:]), 1) for r in rows)


def _default_months(conn: psycopg.Connection) -> dict[date, int]:
    # The DEFAULT partition is small by design (it only holds months nobody made a partition for).
    # UTC months, as create_monthly_partition makes them (docs/schema.md 93).
    rows = conn.execute(
        "select date_trunc('month', created_at at time zone 'UTC')::date, count(*)"
        " from keap_pipeline.sync_audit_log_default group by 1"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _window_start(missing: date, current: date, horizon: date) -> date:
    # The function makes four months from its argument: start early enough not to pass the horizon,
    # never before the missing month's window could cover it, never before this month for future months.
    start = max(min(missing, _month(horizon, -(FUNCTION_WINDOW - 1))), _month(missing, -(FUNCTION_WINDOW - 1)))
    if missing >= current:
        start = max(start, current)
    return start


def _validate_lock_timeout(lock_timeout: str) -> str:
    value = lock_timeout.strip()
    digits = value.rstrip("smin ")
    if not digits.isdigit() or value[len(digits):].strip() not in ("", "ms", "s", "min"):
        raise MaintenanceError(f"lock_timeout {lock_timeout!r}: give a duration such as 500ms, 5s or 1min")
    return value


def audit_partitions(
    conn: psycopg.Connection,
    *,
    months_ahead: int = 3,
    retention_months: int | None = None,
    dry_run: bool = False,
    today: date | None = None,
) -> PartitionReport:
    """Keep the audit log's monthly partitions ahead, bring DEFAULT rows home, and drop old months if asked.

    Partitions are made only through public.create_monthly_partition (which attaches without blocking
    writers of other months). Rows the DEFAULT partition caught move into their month's new partition,
    except rows older than the retention (they would only be dropped again); those are left and counted.

    Args:
        conn: a connection (not in autocommit; each step commits on its own).
        months_ahead: months after the current one that must have a partition (the function makes at
            least the current month and three ahead, so fewer than 3 still leaves three).
        retention_months: detach and drop partitions whose month ended more than this many months ago;
            None keeps everything.
        dry_run: report what would be done, change nothing.
        today: the current date (tests); the database's current_date when None.

    Returns:
        The report: created, dropped, rows moved, rows left in DEFAULT, newest and oldest month.

    Raises:
        MaintenanceError: months_ahead is outside 0..MAX_MONTHS_AHEAD, or retention_months outside
            1..MAX_RETENTION_MONTHS.
        psycopg.Error: the database refused (e.g. lock_timeout behind a long transaction).
    """
    if not 0 <= months_ahead <= MAX_MONTHS_AHEAD:
        raise MaintenanceError(f"months_ahead must be from 0 to {MAX_MONTHS_AHEAD}")
    if retention_months is not None and not 1 <= retention_months <= MAX_RETENTION_MONTHS:
        raise MaintenanceError(
            f"retention_months must be from 1 to {MAX_RETENTION_MONTHS} (leave it unset to keep everything)"
        )
    if today is None:
        row = conn.execute("select (pg_catalog.now() at time zone 'UTC')::date").fetchone()
        assert row is not None
        today = row[0]
    current = _month(today)
    horizon = _month(current, months_ahead)
    cutoff = _month(current, -retention_months) if retention_months is not None else None
    report = PartitionReport(dry_run=dry_run)

    existing = set(_partition_months(conn))
    in_default = _default_months(conn)
    conn.commit()

    # Months to make: every month from now to the horizon, and every month DEFAULT holds rows of
    # (unless the retention would drop it at once).
    wanted = {_month(current, k) for k in range(months_ahead + 1)}
    homeless = {m for m in in_default if cutoff is None or _month(m, 1) > cutoff}
    wanted |= homeless
    planned = set(existing)
    for missing in sorted(wanted - existing):
        if missing in planned:
            continue
        start = _window_start(missing, current, horizon)
        window = [_month(start, k) for k in range(FUNCTION_WINDOW)]
        if dry_run:
            report.created.extend(_name(m) for m in window if m not in planned)
        else:
            created = [r[0] for r in conn.execute("select * from public.create_monthly_partition(%s)", (start,))]
            conn.commit()
            report.created.extend(created)
            log.info("audit partitions: created %s", ", ".join(created) or "none")
        planned.update(window)
    report.rows_moved = sum(n for m, n in in_default.items() if m in planned)

    if cutoff is not None:
        old = [m for m in sorted(planned) if _month(m, 1) <= cutoff]
        for month in old:
            report.dropped.append(_name(month))
            if dry_run:
                continue
            # DETACH ... CONCURRENTLY is refused while a DEFAULT partition exists; plain DETACH takes
            # ACCESS EXCLUSIVE on the parent for a moment, hence the lock_timeout: fail, never stall writers.
            conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(DEFAULT_LOCK_TIMEOUT)))
            conn.execute(
                sql.SQL("alter table public.sync_audit_log detach partition {}").format(
                    sql.Identifier("keap_pipeline", _name(month))
                )
            )
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier("keap_pipeline", _name(month))))
            conn.commit()
            log.info("audit partitions: dropped %s", _name(month))
        planned.difference_update(old)

    if dry_run:
        report.rows_left_in_default = sum(n for m, n in in_default.items() if m not in planned)
    else:
        left = conn.execute("select count(*) from keap_pipeline.sync_audit_log_default").fetchone()
        conn.commit()
        report.rows_left_in_default = int(left[0]) if left else 0
        planned = set(_partition_months(conn))
        conn.commit()
    if planned:
        report.newest_month = f"{max(planned):%Y-%m}"
        report.oldest_month = f"{min(planned):%Y-%m}"
    return report


# sync_queue items that are history: sent (completed) or superseded by a newer item (cancelled). Items in
# error, held or unsupported wait for an operator and are never purged; pending and processing are work.
QUEUE_DONE_STATUSES: tuple[str, ...] = ("completed", "cancelled")
DEFAULT_QUEUE_KEEP_DAYS = 30
MAX_QUEUE_KEEP_DAYS = 36_500  # a hundred years
# Blocks of sync_queue per purge transaction (a TID range: one pass over the table whatever its size,
# no index needed; at fillfactor 50 about 2,000 items): short transactions beside the pushers' claims.
QUEUE_PURGE_BLOCKS = 64


@dataclass
class QueueReport:
    """What purge_queue did (or, with dry_run, would do)."""

    dry_run: bool
    keep_days: int
    purged: int = 0
    transactions: int = 0
    left: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The report in words, the same for the CLI and the Dagster log."""
        verb = "would be purged" if self.dry_run else "purged"
        left = ", ".join(f"{status} {n}" for status, n in sorted(self.left.items())) or "none"
        return [
            f"queue items {verb} (completed or cancelled more than {self.keep_days} days ago): {self.purged}"
            + ("" if self.dry_run else f" in {self.transactions} transaction(s)"),
            f"queue items left by status: {left}",
        ] + (["dry run: nothing was changed"] if self.dry_run else [])


def purge_queue(conn: psycopg.Connection, *, keep_days: int = DEFAULT_QUEUE_KEEP_DAYS, dry_run: bool = False) -> QueueReport:
    """Delete sync_queue's history: items completed or cancelled more than keep_days ago.

    Items in error, held or unsupported are kept whatever their age (an operator's to resolve), and so
    are pending and processing ones. The table is walked once in physical order, QUEUE_PURGE_BLOCKS
    blocks per transaction (a TID range scan: no index on completion time, which would cost every
    claim's HOT update), so no transaction holds many rows and the pushers' claims go on beside it.

    Args:
        conn: a connection (not in autocommit; each chunk commits on its own).
        keep_days: keep items finished within this many days (1 or more).
        dry_run: count what would be purged, change nothing.

    Returns:
        The report: items purged, transactions, items left by status.

    Raises:
        MaintenanceError: keep_days is outside 1..MAX_QUEUE_KEEP_DAYS.
        psycopg.Error: the database refused.
    """
    if not 1 <= keep_days <= MAX_QUEUE_KEEP_DAYS:
        raise MaintenanceError(f"keep_days must be from 1 to {MAX_QUEUE_KEEP_DAYS}")
    report = QueueReport(dry_run=dry_run, keep_days=keep_days)
    done = sql.SQL(
        "status = any(%(statuses)s) and completed_at < pg_catalog.now() - pg_catalog.make_interval(days => %(days)s)"
    )
    params: dict[str, object] = {"statuses": list(QUEUE_DONE_STATUSES), "days": keep_days}
    if not dry_run:
        # the blocks there are now; items added meanwhile are new (and kept) anyway
        row = conn.execute(
            "select pg_catalog.pg_relation_size('public.sync_queue') / pg_catalog.current_setting('block_size')::bigint"
        ).fetchone()
        blocks = int(row[0]) if row else 0
        conn.commit()
        statement = sql.SQL(
            "delete from public.sync_queue where ctid >= %(lo)s::tid and ctid < %(hi)s::tid and {}"
        ).format(done)
        for lo in range(0, blocks, QUEUE_PURGE_BLOCKS):
            cur = conn.execute(statement, {**params, "lo": f"({lo},0)", "hi": f"({lo + QUEUE_PURGE_BLOCKS},0)"})
            conn.commit()
            report.purged += max(cur.rowcount, 0)
            report.transactions += 1
        log.info("queue: purged %d item(s) in %d transaction(s)", report.purged, report.transactions)
    rows = conn.execute(
        sql.SQL("select status, count(*) filter (where {}), count(*) from public.sync_queue group by status").format(done),
        params,
    ).fetchall()
    conn.commit()
    if dry_run:
        report.purged = sum(int(r[1]) for r in rows)
    report.left = {str(r[0]): int(r[2]) - (int(r[1]) if dry_run else 0) for r in rows}
    return report


@dataclass
class VacuumResult:
    """One table's VACUUM (ANALYZE) or ANALYZE."""

    table: str
    action: str
    dead_tuples_before: int | None = None
    dead_tuples_after: int | None = None
    pages: int | None = None
    seconds: float = 0.0
    skipped: str | None = None

    def line(self) -> str:
        """The result in words, the same for the CLI and the Dagster log."""
        if self.skipped:
            return f"{self.table}: skipped ({self.skipped})"
        return (
            f"{self.table}: {self.action} in {self.seconds:.2f}s, dead tuples {self.dead_tuples_before} -> "
            f"{self.dead_tuples_after}, {self.pages} pages"
        )


def _dead_tuples(conn: psycopg.Connection, table: str) -> tuple[int | None, int | None]:
    conn.execute("select pg_catalog.pg_stat_clear_snapshot()")
    row = conn.execute(
        "select s.n_dead_tup, c.relpages"
        " from pg_catalog.pg_class as c"
        " left join pg_catalog.pg_stat_all_tables as s on s.relid = c.oid"
        " where c.oid = pg_catalog.to_regclass(%s)",
        (f"public.{table}",),
    ).fetchone()
    if row is None:
        return None, None
    return row[0], row[1]


def _vacuum_running(conn: psycopg.Connection, table: str) -> str | None:
    row = conn.execute(
        "select case when a.backend_type = 'autovacuum worker' or a.query ilike 'autovacuum:%%'"
        " then 'autovacuum is already on it' else 'another VACUUM is already on it' end"
        " from pg_catalog.pg_stat_progress_vacuum as p"
        " left join pg_catalog.pg_stat_activity as a on a.pid = p.pid"
        " where p.relid = pg_catalog.to_regclass(%s) and p.pid <> pg_catalog.pg_backend_pid()"
        " limit 1",
        (f"public.{table}",),
    ).fetchone()
    return row[0] if row else None


def vacuum_analyze(
    conn: psycopg.Connection,
    *,
    tables: Sequence[str] | None = None,
    analyze_only: bool = False,
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
) -> list[VacuumResult]:
    """VACUUM (ANALYZE) the sync tables one at a time (never FULL), skipping a table another VACUUM is on.

    Args:
        conn: an autocommit connection (VACUUM cannot run inside a transaction).
        tables: names from SYNC_TABLES; all of them when None or empty.
        analyze_only: ANALYZE only (cheap: refreshes the planner's statistics, reclaims nothing).
        lock_timeout: how long to wait for a table's lock before skipping it (e.g. 5s, 500ms).

    Returns:
        One result per table: dead tuples before/after, pages, seconds, or why it was skipped.

    Raises:
        MaintenanceError: the connection is not autocommit, a table is unknown or lock_timeout malformed.
    """
    if not conn.autocommit:
        raise MaintenanceError("vacuum_analyze needs an autocommit connection (VACUUM cannot run in a transaction)")
    chosen = list(tables) if tables else list(SYNC_TABLES)
    unknown = [t for t in chosen if t not in SYNC_TABLES]
    if unknown:
        raise MaintenanceError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(SYNC_TABLES)}")
    conn.execute(sql.SQL("set lock_timeout = {}").format(sql.Literal(_validate_lock_timeout(lock_timeout))))
    action = "ANALYZE" if analyze_only else "VACUUM (ANALYZE)"
    results: list[VacuumResult] = []
    for table in chosen:
        result = VacuumResult(table=table, action=action)
        result.dead_tuples_before, _ = _dead_tuples(conn, table)
        busy = _vacuum_running(conn, table)
        if busy:
            result.skipped = busy
            results.append(result)
            log.info("vacuum: %s", result.line())
            continue
        ident = sql.Identifier("public", table)
        statement = sql.SQL("analyze {}") if analyze_only else sql.SQL("vacuum (analyze) {}")
        started = time.monotonic()
        try:
            conn.execute(statement.format(ident))
        except psycopg.errors.LockNotAvailable:
            result.skipped = (
                f"lock not granted within lock_timeout {lock_timeout}: autovacuum, another VACUUM or DDL holds it"
            )
        result.seconds = round(time.monotonic() - started, 3)
        result.dead_tuples_after, result.pages = _dead_tuples(conn, table)
        results.append(result)
        log.info("vacuum: %s", result.line())
    return results


def cron_ran_recently(conn: psycopg.Connection, jobname: str, within_seconds: float) -> str | None:
    """Whether the migrations' pg_cron job exists, is active and succeeded within the interval.

    Args:
        conn: a connection to the sync database.
        jobname: one of the keap-pipeline:* job names of 15-partitioning.sql.
        within_seconds: the schedule's interval.

    Returns:
        A sentence saying when pg_cron last ran it successfully, or None when Dagster should do the chore.
    """
    present = conn.execute(
        "select pg_catalog.to_regclass('cron.job') is not null and pg_catalog.to_regclass('cron.job_run_details') is not null"
    ).fetchone()
    if not present or not present[0]:
        conn.rollback()
        return None
    row = conn.execute(
        "select max(d.end_time)"
        " from cron.job as j"
        " join cron.job_run_details as d on d.jobid = j.jobid"
        " where j.jobname = %s"
        "   and j.database = pg_catalog.current_database()"
        "   and j.active"
        "   and d.status = 'succeeded'"
        "   and d.end_time > pg_catalog.now() - pg_catalog.make_interval(secs => %s)",
        (jobname, within_seconds),
    ).fetchone()
    conn.rollback()
    if not row or row[0] is None:
        return None
    return f"pg_cron job {jobname} already ran successfully at {row[0]:%Y-%m-%d %H:%M:%S %Z}; it owns this chore here"
