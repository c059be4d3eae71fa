"""Dagster jobs and schedules of the database chores: audit partitions, VACUUM (ANALYZE), queue history; thin over db/maintenance.py."""

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import psycopg
from dagster import (
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)
from pydantic import Field, field_validator

from keap_pipeline.db import maintenance
from keap_pipeline.db.maintenance import CRON_CREATE_PARTITIONS, CRON_VACUUM_ANALYZE, SYNC_TABLES
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.errors import KeapPipelineError

T = TypeVar("T")

AUDIT_PARTITIONS_CRON = "0 0 1 * *"  # the request's: monthly
VACUUM_ANALYZE_CRON = "0 2 * * *"  # the request's: nightly
QUEUE_RETENTION_CRON = "30 3 * * *"  # daily, after the vacuum
# How far back a pg_cron run still counts as "this interval's": a month (31 days) and a day, plus slack.
AUDIT_PARTITIONS_INTERVAL = timedelta(days=31, hours=1)
VACUUM_ANALYZE_INTERVAL = timedelta(days=1, hours=1)


class AuditPartitionsConfig(Config):
    """What audit_partitions_job does (the Launchpad offers and validates these)."""

    months_ahead: int = Field(
        default=3, ge=0, le=maintenance.MAX_MONTHS_AHEAD,
        description="months after the current one that must have an audit partition",
    )
    retention_months: int | None = Field(
        default=None,
        ge=1,
        le=maintenance.MAX_RETENTION_MONTHS,
        description="detach and drop audit partitions whose month ended more than this many months ago; empty keeps everything",
    )
    dry_run: bool = Field(default=False, description="report what would be done and change nothing")


class VacuumAnalyzeConfig(Config):
    """What vacuum_analyze_job does."""

    tables: list[str] = Field(default_factory=list, description=f"sync tables to process; empty means all: {', '.join(SYNC_TABLES)}")
    analyze_only: bool = Field(default=False, description="ANALYZE only: refresh planner statistics, reclaim nothing")
    lock_timeout: str = Field(default=maintenance.DEFAULT_LOCK_TIMEOUT, description="wait this long for a table's lock, then skip it (e.g. 5s, 500ms)")

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: list[str]) -> list[str]:
        unknown = [t for t in tables if t not in SYNC_TABLES]
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(SYNC_TABLES)}")
        return tables


class QueueRetentionConfig(Config):
    """What queue_retention_job does."""

    keep_days: int = Field(
        default=maintenance.DEFAULT_QUEUE_KEEP_DAYS, ge=1, le=maintenance.MAX_QUEUE_KEEP_DAYS,
        description="purge sync_queue items completed or cancelled more than this many days ago (items in error, held or unsupported are kept)",
    )
    dry_run: bool = Field(default=False, description="count what would be purged and change nothing")


def _database_failure(err: psycopg.Error, what: str) -> Failure:
    # The SQLSTATE and the server's primary message only: no conninfo, no row values.
    diag = getattr(err, "diag", None)
    primary = diag.message_primary if diag is not None and diag.message_primary else type(err).__name__
    return Failure(description=f"{what} failed in the database ({err.sqlstate or 'no SQLSTATE'}): {primary}")


def _chore(what: str, postgres: PostgresResource, work: Callable[[psycopg.Connection], T], *, autocommit: bool = False) -> T:
    """Run one chore of db/maintenance.py on a connection; its errors as a Failure a run shows (no secrets)."""
    try:
        with postgres.connect(autocommit=autocommit) as conn:
            return work(conn)
    except psycopg.Error as err:
        raise _database_failure(err, what) from None
    except KeapPipelineError as err:
        raise Failure(description=str(err)) from None


@op(description="Create the missing monthly audit partitions, move DEFAULT rows home, drop old months if asked.")
def audit_partitions_op(context: OpExecutionContext, config: AuditPartitionsConfig, postgres: PostgresResource) -> dict[str, object]:
    """Run db.maintenance.audit_partitions and report its figures as metadata."""
    report = _chore("audit_partitions", postgres, lambda conn: maintenance.audit_partitions(
        conn, months_ahead=config.months_ahead, retention_months=config.retention_months, dry_run=config.dry_run
    ))
    for line in report.lines():
        context.log.info(line)
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            "partitions_created": len(report.created),
            "partitions_dropped": len(report.dropped),
            "rows_moved": report.rows_moved,
            "rows_left_in_default": report.rows_left_in_default,
            "newest_month": MetadataValue.text(report.newest_month or "-"),
            "oldest_month": MetadataValue.text(report.oldest_month or "-"),
            "created": MetadataValue.json(report.created),
            "dropped": MetadataValue.json(report.dropped),
        }
    )
    return {"created": report.created, "dropped": report.dropped, "rows_moved": report.rows_moved, "lines": report.lines()}


@op(description="VACUUM (ANALYZE) the sync tables one at a time on an autocommit connection; never VACUUM FULL.")
def vacuum_analyze_op(context: OpExecutionContext, config: VacuumAnalyzeConfig, postgres: PostgresResource) -> dict[str, object]:
    """Run db.maintenance.vacuum_analyze and report each table as metadata."""
    results = _chore("vacuum_analyze", postgres, lambda conn: maintenance.vacuum_analyze(
        conn, tables=config.tables, analyze_only=config.analyze_only, lock_timeout=config.lock_timeout
    ), autocommit=True)
    metadata: dict[str, object] = {
        "tables_processed": sum(1 for r in results if r.skipped is None),
        "tables_skipped": sum(1 for r in results if r.skipped is not None),
        "seconds_total": round(sum(r.seconds for r in results), 3),
    }
    for r in results:
        context.log.info(r.line())
        metadata[f"{r.table}_dead_tuples_before"] = r.dead_tuples_before if r.dead_tuples_before is not None else -1
        metadata[f"{r.table}_dead_tuples_after"] = r.dead_tuples_after if r.dead_tuples_after is not None else -1
        metadata[f"{r.table}_pages"] = r.pages if r.pages is not None else -1
        metadata[f"{r.table}_seconds"] = r.seconds
        metadata[f"{r.table}_skipped"] = MetadataValue.text(r.skipped or "no")
    context.add_output_metadata(metadata)  # type: ignore[arg-type]
    return {"tables": [vars(r) for r in results], "lines": [r.line() for r in results]}


@op(description="Purge sync_queue's history: items completed or cancelled more than keep_days ago, a block range per transaction.")
def queue_retention_op(context: OpExecutionContext, config: QueueRetentionConfig, postgres: PostgresResource) -> dict[str, object]:
    """Run db.maintenance.purge_queue and report its figures as metadata."""
    report = _chore("queue_retention", postgres, lambda conn: maintenance.purge_queue(
        conn, keep_days=config.keep_days, dry_run=config.dry_run
    ))
    for line in report.lines():
        context.log.info(line)
    context.add_output_metadata(
        {
            "dry_run": config.dry_run,
            "keep_days": config.keep_days,
            "items_purged": report.purged,
            "transactions": report.transactions,
            "items_left": MetadataValue.json(report.left),
        }
    )
    return {"purged": report.purged, "left": report.left, "lines": report.lines()}


@job(description="On demand or monthly: keep the audit log's monthly partitions ahead (config: months_ahead, retention_months, dry_run).")
def audit_partitions_job() -> None:
    """One op: audit_partitions_op."""
    audit_partitions_op()


@job(description="On demand or nightly: VACUUM (ANALYZE) of the sync tables (config: tables, analyze_only, lock_timeout).")
def vacuum_analyze_job() -> None:
    """One op: vacuum_analyze_op."""
    vacuum_analyze_op()


@job(description="On demand or daily: purge sync_queue items completed or cancelled more than keep_days ago (config: keep_days, dry_run).")
def queue_retention_job() -> None:
    """One op: queue_retention_op."""
    queue_retention_op()


def _pg_cron_owns(postgres: PostgresResource, jobname: str, interval: timedelta) -> str | None:
    try:
        with postgres.connect() as conn:
            return maintenance.cron_ran_recently(conn, jobname, interval.total_seconds())
    except psycopg.Error:
        # Cannot tell: run, and let the run report the database error where an operator sees it.
        return None


@schedule(
    job=audit_partitions_job,
    cron_schedule=AUDIT_PARTITIONS_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Monthly: audit partitions three months ahead; skips when pg_cron's keap-pipeline:create-partitions ran this month.",
)
def audit_partitions_schedule(context: ScheduleEvaluationContext, postgres: PostgresResource) -> RunRequest | SkipReason:
    """Skip when the migrations' pg_cron job did the chore within the interval; otherwise run with defaults."""
    owner = _pg_cron_owns(postgres, CRON_CREATE_PARTITIONS, AUDIT_PARTITIONS_INTERVAL)
    if owner:
        return SkipReason(owner)
    tick = context.scheduled_execution_time
    return RunRequest(run_key=f"audit-partitions-{tick.isoformat()}" if tick else None)


@schedule(
    job=vacuum_analyze_job,
    cron_schedule=VACUUM_ANALYZE_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: VACUUM (ANALYZE) of the sync tables; skips when pg_cron's keap-pipeline:vacuum-analyze ran today.",
)
def vacuum_analyze_schedule(context: ScheduleEvaluationContext, postgres: PostgresResource) -> RunRequest | SkipReason:
    """Skip when the migrations' pg_cron job did the chore within the interval; otherwise run with defaults."""
    owner = _pg_cron_owns(postgres, CRON_VACUUM_ANALYZE, VACUUM_ANALYZE_INTERVAL)
    if owner:
        return SkipReason(owner)
    tick = context.scheduled_execution_time
    return RunRequest(run_key=f"vacuum-analyze-{tick.isoformat()}" if tick else None)


@schedule(
    job=queue_retention_job,
    cron_schedule=QUEUE_RETENTION_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description=f"Daily: purge sync_queue items completed or cancelled more than {maintenance.DEFAULT_QUEUE_KEEP_DAYS} days ago (errors are kept).",
)
def queue_retention_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Run with the defaults (no pg_cron job does this chore)."""
    tick = context.scheduled_execution_time
    return RunRequest(run_key=f"queue-retention-{tick.isoformat()}" if tick else None)
