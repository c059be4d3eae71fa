"""The keap_contacts asset (time-window partitions on Keap's update time), its checks, job and schedule."""

from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    asset,
    asset_check,
    define_asset_job,
    schedule,
)
from pydantic import Field

from keap_pipeline.db.cursors import INCREMENTAL, get_cursor, window_scope
from keap_pipeline.db.dead_letters import dead_letter_summary
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import CONTACTS
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.pipeline.report import SyncReport
from keap_pipeline.pipeline.sync import sync_entity

# Keap accounts hold history from long before this pipeline; a daily window per partition
# keeps backfills as fine-grained as anyone needs, and a single run pages any range.
PARTITIONS = DailyPartitionsDefinition(start_date="2010-01-01", timezone="UTC", end_offset=1)
SCHEDULE_CRON = "*/15 * * * *"
SCHEDULE_INTERVAL = timedelta(minutes=15)
# The cursor is stale when no incremental sync committed for this long: two missed ticks plus slack.
CURSOR_MAX_AGE = SCHEDULE_INTERVAL * 2 + timedelta(minutes=15)
KEAP_POOL = "keap_api"


class ContactsSyncConfig(Config):
    """How a keap_contacts run syncs (the Launchpad offers and checks these values)."""

    mode: Literal["window", "incremental"] = Field(
        default="window",
        description="window: the run's partition range (backfills); incremental: from the stored cursor to now (the schedule)",
    )
    strategy: Literal["keap_wins", "supabase_wins", "manual", "merge"] = Field(
        default="keap_wins", description="what to do with a contact changed in Keap and locally since the last sync"
    )
    merge_rule: Literal["keap_wins", "supabase_wins", "manual"] = Field(
        default="manual", description="for strategy merge: a field changed on both sides (manual = park the contact)"
    )
    pages_per_batch: int = Field(default=1, ge=1, le=50, description="fewest Keap pages per database transaction")
    page_size: int = Field(default=1000, ge=1, le=1000)
    loaders: int = Field(
        default=2, ge=1, le=8,
        description="batches loading at once, each on its own database connection; they commit in page order",
    )
    lock_wait_seconds: float = Field(
        default=300.0, ge=0, le=86_400,
        description="when another contacts run holds the run lock (a CLI sync or replay beside this run), wait "
        "this long for it, then fail naming it",
    )
    lock_timeout_seconds: float = Field(
        default=30.0, ge=0, le=3_600, description="a loader's longest wait for one row lock before its batch is retried"
    )
    stall_seconds: float = Field(
        default=300.0, ge=0, le=86_400,
        description="stop the run when no batch commits for this long, naming what the loaders wait on (0 = never)",
    )


def _metadata(report: SyncReport) -> dict[str, MetadataValue | int | float | str]:
    c = report.counts
    return {
        "records_seen": report.records_seen,
        "inserted": c.inserted,
        "updated": c.updated,
        "unchanged": c.unchanged + c.stale,
        "duplicates_in_batch": c.duplicates,
        "local_pending": c.local_pending,
        "conflicts": c.conflicts,
        "conflicts_by_strategy": MetadataValue.json(
            {
                "strategy": report.strategy,
                "keap_wins": c.conflicts_keap_wins,
                "supabase_wins": c.conflicts_supabase_wins,
                "merged": c.conflicts_merged,
                "parked": c.conflicts_parked,
            }
        ),
        "dead_lettered": report.dead_lettered,
        "pages": report.pages,
        "batches": report.batches,
        "requests": report.requests,
        "quota_left": report.quota_available if report.quota_available is not None else -1,
        "seconds": round(report.seconds, 3),
        "records_per_second": round(report.records_per_second, 1),
        "cursor": MetadataValue.text(report.cursor.isoformat() if report.cursor else "-"),
        "scope": MetadataValue.text(report.scope),
    }


@asset(
    deps=["sync_schema"],
    partitions_def=PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    pool=KEAP_POOL,
    group_name="keap",
    kinds={"postgres", "python"},
    description="Keap contacts -> public.sync_contacts (COPY + set-based upsert, conflicts resolved, audited as keap).",
)
def keap_contacts(
    context: AssetExecutionContext, config: ContactsSyncConfig, keap: KeapResource, postgres: PostgresResource
) -> MaterializeResult:
    """Sync the run's window of Keap contacts (or, incremental, everything since the cursor)."""
    if config.mode == "incremental":
        since, until, scope = None, None, INCREMENTAL
    else:
        window = context.partition_time_window
        since, until = window.start.astimezone(UTC), window.end.astimezone(UTC)
        scope = window_scope(since, until)

    def progress(report: SyncReport) -> None:
        context.log.info(
            f"contacts: {report.pages} pages, {report.records_seen} records, "
            f"{report.records_per_second:,.0f}/s, cursor {report.cursor.isoformat() if report.cursor else '-'}"
        )

    try:
        with keap.client() as client:
            report = sync_entity(
                client,
                postgres.url(),
                CONTACTS,
                since=since,
                until=until,
                scope=scope,
                strategy=config.strategy,
                merge_rule=config.merge_rule,
                page_size=config.page_size,
                pages_per_batch=config.pages_per_batch,
                loaders=config.loaders,
                run_id=context.run.run_id,
                progress=progress,
                lock_wait_seconds=config.lock_wait_seconds,
                lock_timeout_seconds=config.lock_timeout_seconds,
                stall_seconds=config.stall_seconds,
                on_lock_wait=lambda holder: context.log.info(
                    f"contacts: another run is in progress ({holder}); waiting up to {config.lock_wait_seconds:g} s"
                ),
            )
    except (KeapPipelineError, ValueError) as err:
        raise Failure(description=f"contacts sync failed: {err}") from None
    except psycopg.OperationalError as err:
        raise Failure(
            description=f"contacts sync failed, the database is unreachable ({postgres.safe_url()}): "
            f"{str(err).strip()}; check KEAP_PIPELINE_DATABASE_URL and that the server runs. Batches "
            "committed before the failure are kept with their cursor; the next run resumes."
        ) from None
    context.log.info(report.summary())
    if report.stopped_early:
        raise Failure(
            description=f"stopped early, everything fetched so far is committed and the cursor saved: {report.stopped_early}",
            metadata=_metadata(report),
        )
    return MaterializeResult(metadata=_metadata(report))


@asset_check(asset=keap_contacts, description="Open dead letters of contacts: how many, and why.")
def keap_contacts_dead_letters(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    """Warn while contacts wait in the dead-letter table; metadata lists the commonest reasons."""
    with postgres.connect() as conn:
        count, reasons = dead_letter_summary(conn, CONTACTS.name)
    return AssetCheckResult(
        passed=count == 0,
        severity=AssetCheckSeverity.WARN,
        description="no open dead letters" if count == 0 else f"{count} contacts could not be loaded; see `keap-pipeline dead-letters list`",
        metadata={
            "open_dead_letters": count,
            "reasons": MetadataValue.md("\n".join(f"- {n} × {r}" for r, n in reasons) or "none"),
        },
    )


@asset_check(asset=keap_contacts, description="The incremental cursor moved within the schedule's allowance.")
def keap_contacts_cursor_fresh(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    """Fail when no incremental sync committed within two schedule intervals (plus slack)."""
    with postgres.connect() as conn:
        cursor = get_cursor(conn, CONTACTS.name, INCREMENTAL)
    if cursor is None:
        return AssetCheckResult(passed=False, description="no incremental sync has committed yet", metadata={"max_age_minutes": CURSOR_MAX_AGE.total_seconds() / 60})
    age = datetime.now(UTC) - cursor.updated_at
    return AssetCheckResult(
        passed=age <= CURSOR_MAX_AGE,
        description=f"last incremental commit {age.total_seconds() / 60:.1f} min ago",
        metadata={
            "cursor": MetadataValue.text(cursor.value.isoformat()),
            "last_commit": MetadataValue.text(cursor.updated_at.isoformat()),
            "age_minutes": round(age.total_seconds() / 60, 1),
            "max_age_minutes": CURSOR_MAX_AGE.total_seconds() / 60,
            "records_total": cursor.records_total,
        },
    )


keap_contacts_job = define_asset_job(
    "keap_contacts_job",
    selection=[AssetKey("keap_contacts")],
    description="On demand: sync the chosen partitions' windows of Keap contacts (one run per range).",
)


@schedule(
    job=keap_contacts_job,
    cron_schedule=SCHEDULE_CRON,
    execution_timezone="UTC",
    description="Incremental contacts sync from the stored cursor, every 15 minutes.",
)
def keap_contacts_incremental_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Run today's partition in incremental mode: the cursor, not the partition, bounds what is read."""
    tick = context.scheduled_execution_time or datetime.now(UTC)
    partition_key = tick.astimezone(UTC).strftime("%Y-%m-%d")
    return RunRequest(
        run_key=f"incremental-{tick.astimezone(UTC).isoformat()}",
        partition_key=partition_key,
        run_config={"ops": {"keap_contacts": {"config": {"mode": "incremental"}}}},
        tags={"keap_pipeline/mode": "incremental"},
    )
