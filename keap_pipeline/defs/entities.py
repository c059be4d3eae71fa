"""The Dagster shell of every Keap entity, generated from the entity table (keap_pipeline.entities).

For each entity: the asset ``keap_<name>`` (deps: sync_schema and the assets of what it depends
on, so the graph is the lineage), its config class (``<Name>SyncConfig``), its checks
(defs.entity_checks), the job ``keap_<name>_job`` and the schedule
``keap_<name>_incremental_schedule``; and its reconcile pass (deletions in Keap, defs.deletions):
``keap_<name>_deletions`` downstream of ``keap_<name>``, its safety check, job and daily schedule. Across entities: ``keap_sync_all_job`` and its schedule
``keap_sync_all_schedule``, every entity in lineage order. Every asset that calls Keap runs in
the shared ``keap_api`` pool.

TIME entities have monthly partitions of Keap's update time (defs.partitions); a backfill over any
range is one run (BackfillPolicy.single_run) that syncs the range as one window, and the incremental
schedule's run covers the partitions from the cursor's month to the current one, so the partitions
say what is loaded. The figures of such a run are the range's (metadata keys range_*). ID and FULL
entities have no time filter in Keap: they are not partitioned, and every run is a full pass.
"""

# No `from __future__ import annotations` here: Dagster reads the generated functions'
# annotations (the config class) at definition time.

import copy
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

import psycopg
import pydantic
from dagster import (
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from pydantic import Field
from pydantic.fields import FieldInfo

from keap_pipeline.db.cursors import INCREMENTAL, get_cursor, window_scope
from keap_pipeline.db.load import ConflictStrategy, MergeRule
from keap_pipeline.defs.deletions import DeletionDefs, deletion_defs
from keap_pipeline.defs.entity_checks import entity_checks
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.partitions import (
    PARTITIONS,
    incremental_range,
    key_of,
    partition_window_text,
    range_text,
    read_window,
)
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import ENTITIES, CursorKind, Entity, lineage_order
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.pipeline.report import SyncReport
from keap_pipeline.pipeline.sync import sync_entity

SCHEDULE_CRON = "*/15 * * * *"
SCHEDULE_INTERVAL = timedelta(minutes=15)
# The cursor is stale when no incremental sync committed for this long: two missed ticks plus slack.
CURSOR_MAX_AGE = SCHEDULE_INTERVAL * 2 + timedelta(minutes=15)
KEAP_POOL = "keap_api"
GROUP = "keap"
SYNC_ALL_JOB = "keap_sync_all_job"
SYNC_ALL_SCHEDULE = "keap_sync_all_schedule"
MODE_TAG = "keap_pipeline/mode"
# the run's figures of a partitioned asset carry this prefix: they are the whole range's
RANGE_PREFIX = "range_"
# metadata that is not a figure of the run (the same on every partition by nature)
_NOT_FIGURES = frozenset({"cursor", "scope", "quota_left"})


def asset_name(entity: Entity) -> str:
    """The entity's asset (and op) name: ``keap_<name>``."""
    return f"keap_{entity.name}"


class EntitySyncConfig(Config):
    """How a run of a keap_<name> asset syncs (each entity has its subclass, <Name>SyncConfig)."""

    strategy: ConflictStrategy = Field(
        default="keap_wins", description="what to do with a record changed in Keap and locally since the last sync"
    )
    merge_rule: MergeRule = Field(
        default="manual", description="for strategy merge: a field changed on both sides (manual = park the record)"
    )
    pages_per_batch: int = Field(default=1, ge=1, le=50, description="fewest Keap pages per database transaction")
    page_size: int = Field(default=1000, ge=1, le=1000)
    loaders: int = Field(
        default=2, ge=1, le=8,
        description="batches loading at once, each on its own database connection; they commit in page order",
    )
    lock_wait_seconds: float = Field(
        default=300.0, ge=0, le=86_400,
        description="when another run of the entity holds its run lock (a CLI sync or replay beside this run), "
        "wait this long for it, then fail naming it",
    )
    lock_timeout_seconds: float = Field(
        default=30.0, ge=0, le=3_600, description="a loader's longest wait for one row lock before its batch is retried"
    )
    stall_seconds: float = Field(
        default=300.0, ge=0, le=86_400,
        description="stop the run when no batch commits for this long, naming what the loaders wait on (0 = never)",
    )


class TimedSyncConfig(EntitySyncConfig):
    """The config of an entity with a time filter: a partition window or, incremental, from the cursor."""

    mode: Literal["window", "incremental"] = Field(
        default="window",
        description="window: the run's partition range (backfills); incremental: from the stored cursor to now (the schedule)",
    )


def _worded(field: str, description: str) -> tuple[Any, FieldInfo]:
    # the base class's field with the entity's own words
    base = EntitySyncConfig.model_fields[field]
    info = copy.copy(base)
    info.description = description
    return base.annotation, info


def _config_class(entity: Entity) -> type[EntitySyncConfig]:
    # One class per entity, named for it (ContactsSyncConfig: the Launchpad and the docs name it),
    # its descriptions in the entity's words; TIME entities add `mode` (TimedSyncConfig).
    record = entity.name.removesuffix("s")
    base: type[EntitySyncConfig] = TimedSyncConfig if entity.cursor is CursorKind.TIME else EntitySyncConfig
    return pydantic.create_model(
        f"{entity.name.capitalize()}SyncConfig",
        __base__=base,
        __module__=__name__,
        __doc__=f"How a {asset_name(entity)} run syncs (the Launchpad offers and checks these values).",
        strategy=_worded("strategy", f"what to do with a {record} changed in Keap and locally since the last sync"),
        merge_rule=_worded("merge_rule", f"for strategy merge: a field changed on both sides (manual = park the {record})"),
        lock_wait_seconds=_worded(
            "lock_wait_seconds",
            f"when another {entity.name} run holds the run lock (a CLI sync or replay beside this run), wait this "
            "long for it, then fail naming it",
        ),
    )


def _metadata(report: SyncReport) -> dict[str, MetadataValue | int | float | str]:
    c = report.counts
    # quota_left only when Keap reported a daily quota (the sandbox with its limits off reports none)
    quota = {} if report.quota_available is None else {"quota_left": report.quota_available}
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
        **quota,
        "seconds": round(report.seconds, 3),
        "records_per_second": round(report.records_per_second, 1),
        "cursor": MetadataValue.text(report.cursor.isoformat() if report.cursor else "-"),
        "scope": MetadataValue.text(report.scope),
    }


def _range_metadata(report: SyncReport, keys: list[str]) -> dict[str, MetadataValue | int | float | str]:
    # Dagster writes the run's metadata on every partition of the range: the figures are named
    # as the range's (range_records_seen ...), and `range` says which range that is
    figures = {(k if k in _NOT_FIGURES else f"{RANGE_PREFIX}{k}"): v for k, v in _metadata(report).items()}
    return {"range": MetadataValue.text(range_text(keys)), **figures}


def run_figures(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A materialization's figures under their plain names (records_seen ...), for either kind of asset.

    Args:
        metadata: the metadata of a keap_<name> materialization (a partitioned asset's figures are
            named range_*).

    Returns:
        The same values, the range_ prefix removed.
    """
    return {k.removeprefix(RANGE_PREFIX): v for k, v in metadata.items()}


def _description(entity: Entity) -> str:
    text = f"Keap {entity.name} -> {entity.target_table} (COPY + set-based upsert, conflicts resolved, audited as keap)."
    if entity.cursor is CursorKind.TIME:
        return text
    resume = " resumed after a kill from the highest id committed;" if entity.cursor is CursorKind.ID else ""
    return (
        f"{text} Not time-partitioned: Keap's listing of {entity.name} has no time filter, so every run is a "
        f"full pass ({entity.cursor.value} cursor;{resume} unchanged rows cost no writes)."
    )


def _asset(entity: Entity, config_class: type[EntitySyncConfig]) -> AssetsDefinition:
    timed = entity.cursor is CursorKind.TIME

    def sync(
        context: AssetExecutionContext, config: EntitySyncConfig, keap: KeapResource, postgres: PostgresResource
    ) -> MaterializeResult:
        """Sync the run's window (or, incremental, everything since the cursor; or a full pass)."""
        since: datetime | None = None
        until: datetime | None = None
        scope = INCREMENTAL
        keys: list[str] = []
        if timed:
            keys = list(context.partition_keys)
            for key in keys:
                context.add_asset_metadata(
                    {"partition_window": MetadataValue.text(partition_window_text(key))}, partition_key=key
                )
        if isinstance(config, TimedSyncConfig) and config.mode == "window":
            window = context.partition_time_window
            since, until = read_window(window.start, window.end)
            scope = window_scope(window.start.astimezone(UTC), until)
        # else incremental, or an entity without a time filter: a full pass (since/until stay None)

        def progress(report: SyncReport) -> None:
            context.log.info(report.progress_line())

        try:
            with keap.client() as client:
                report = sync_entity(
                    client,
                    postgres.url(),
                    entity,
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
                        f"{entity.name}: another run is in progress ({holder}); "
                        f"waiting up to {config.lock_wait_seconds:g} s"
                    ),
                )
        except (KeapPipelineError, ValueError) as err:
            raise Failure(description=f"{entity.name} sync failed: {err}") from None
        except psycopg.OperationalError as err:
            raise Failure(
                description=f"{entity.name} sync failed, the database is unreachable ({postgres.safe_url()}): "
                f"{str(err).strip()}; check KEAP_PIPELINE_DATABASE_URL and that the server runs. Batches "
                "committed before the failure are kept with their cursor; the next run resumes."
            ) from None
        context.log.info(report.summary())
        metadata = _range_metadata(report, keys) if timed else _metadata(report)
        if report.stopped_early:
            raise Failure(
                description="stopped early, everything fetched so far is committed and the cursor saved: "
                f"{report.stopped_early}",
                metadata=metadata,
            )
        return MaterializeResult(metadata=metadata)

    # Dagster takes the config schema from the annotation: the entity's own class
    sync.__annotations__["config"] = config_class
    sync.__doc__ = f"Sync Keap {entity.name} into {entity.target_table}."
    # a backfill over any range is one run syncing the range as one window (no backfill policy
    # at all for an unpartitioned asset: Dagster warns on the beta parameter whenever it is passed)
    partitioning: dict[str, Any] = (
        {"partitions_def": PARTITIONS, "backfill_policy": BackfillPolicy.single_run()} if timed else {}
    )
    with warnings.catch_warnings():
        # backfill_policy is "beta" in Dagster's words; we rely on it deliberately (a backfill is one
        # run), and its warning, printed by every process that loads the code, tells a user nothing
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
        return asset(
            name=asset_name(entity),
            deps=["sync_schema", *(asset_name(ENTITIES[d]) for d in entity.depends_on)],
            pool=KEAP_POOL,
            group_name=GROUP,
            kinds={"postgres", "python"},
            description=_description(entity),
            **partitioning,
        )(sync)


def _tick(context: ScheduleEvaluationContext) -> datetime:
    """The tick's time; now when the context has none (a manual evaluation), where Dagster raises."""
    try:
        return context.scheduled_execution_time.astimezone(UTC)
    except Exception:  # dagster raises its (private) CheckError when no time was set
        return datetime.now(UTC)


def _previous_end(context: ScheduleEvaluationContext, job_name: str) -> str | None:
    """The last partition of the job's previous successful incremental run (None: none, or not a key now)."""
    if context.instance_ref is None:  # a manual evaluation without an instance
        return None
    runs = context.instance.get_runs(
        filters=RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.SUCCESS], tags={MODE_TAG: "incremental"}),
        limit=1,
    )
    if not runs:
        return None
    key = runs[0].tags.get(ASSET_PARTITION_RANGE_END_TAG) or runs[0].tags.get(PARTITION_NAME_TAG)
    # a run from before the partition set changed (daily keys, another start) tells nothing
    return key if key and PARTITIONS.has_partition_key(key) else None


def _cursors(
    context: ScheduleEvaluationContext, postgres: PostgresResource, entities: list[Entity]
) -> list[datetime | None] | None:
    """Each entity's incremental cursor; None when the database cannot say (the run will tell why)."""
    try:
        with postgres.connect() as conn:
            return [c.value if (c := get_cursor(conn, e.name, INCREMENTAL)) else None for e in entities]
    except psycopg.Error as err:
        context.log.warning(
            f"cannot read the sync cursors ({type(err).__name__}); the run covers the current partition only"
        )
        return None


def _incremental_schedule(
    name: str,
    job: UnresolvedAssetJobDefinition,
    entities: tuple[Entity, ...],
    description: str,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    timed = [e for e in entities if e.cursor is CursorKind.TIME]
    config = {"ops": {asset_name(e): {"config": {"mode": "incremental"}} for e in timed}} if timed else {}

    def incremental(context: ScheduleEvaluationContext, postgres: PostgresResource) -> RunRequest:
        """One incremental run over the partitions it loads: from the oldest cursor's month to the current one.

        The cursors, not the partitions, bound what is read; the range is what the run makes
        true (partitions.incremental_range). Entities without a time filter do a full pass.
        """
        tick = _tick(context)
        cursors = _cursors(context, postgres, timed)
        first, last = (
            incremental_range(cursors, _previous_end(context, job.name), tick)
            if cursors is not None
            else (key_of(tick), key_of(tick))
        )
        return RunRequest(
            run_key=f"incremental-{tick.isoformat()}",
            run_config=config,
            tags={MODE_TAG: "incremental", ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )

    def full_pass(context: ScheduleEvaluationContext) -> RunRequest:
        """A full pass of entities without a time filter (not partitioned)."""
        return RunRequest(run_key=f"incremental-{_tick(context).isoformat()}", run_config=config, tags={MODE_TAG: "incremental"})

    return schedule(
        name=name,
        job=job,
        cron_schedule=SCHEDULE_CRON,
        execution_timezone="UTC",
        default_status=default_status,
        description=description,
    )(incremental if timed else full_pass)


@dataclass(frozen=True)
class EntityDefs:
    """What the factory made for one entity."""

    entity: Entity
    config: type[EntitySyncConfig]
    asset: AssetsDefinition
    checks: tuple[AssetChecksDefinition, ...]
    job: UnresolvedAssetJobDefinition
    schedule: ScheduleDefinition
    deletions: DeletionDefs


@cache
def defs_for(entity: Entity) -> EntityDefs:
    """The asset, config, checks, job and schedule of one entity (made once per entity).

    Args:
        entity: a row of the entity table.

    Returns:
        The generated definitions; the same objects on every call.
    """
    config_class = _config_class(entity)
    entity_asset = _asset(entity, config_class)
    key = AssetKey(asset_name(entity))
    if entity.cursor is CursorKind.TIME:
        job_text = f"On demand: sync the chosen partitions' windows of Keap {entity.name} (one run per range)."
        schedule_text = f"Incremental {entity.name} sync from the stored cursor, every 15 minutes."
    else:
        job_text = f"On demand: a full pass of Keap {entity.name} (no time filter, not partitioned)."
        schedule_text = f"A full pass of {entity.name}, every 15 minutes (unchanged rows cost no writes)."
    job = define_asset_job(f"{asset_name(entity)}_job", selection=[key], description=job_text)
    return EntityDefs(
        entity=entity,
        config=config_class,
        asset=entity_asset,
        checks=entity_checks(entity, key, CURSOR_MAX_AGE),
        job=job,
        schedule=_incremental_schedule(f"{asset_name(entity)}_incremental_schedule", job, (entity,), schedule_text),
        deletions=deletion_defs(entity, upstream=key, pool=KEAP_POOL, group=GROUP),
    )


def sync_all_job(entities: Iterable[Entity]) -> UnresolvedAssetJobDefinition:
    """``keap_sync_all_job``: every entity given, in lineage order (the asset graph's edges)."""
    return define_asset_job(
        SYNC_ALL_JOB,
        selection=[AssetKey(asset_name(e)) for e in entities],
        description="Every Keap entity in lineage order (tags, products -> contacts -> orders, subscriptions), "
        "one step at a time in the keap_api pool; a child of a failed entity is skipped. Entities with a time "
        "filter sync the run's partition window (or, incremental, from their cursor); the others a full pass.",
    )


def entity_definitions(entities: Mapping[str, Entity] | Iterable[Entity]) -> Definitions:
    """Everything Dagster shows of the entities: their assets, checks, jobs and schedules, plus sync-all.

    Args:
        entities: the entity table (ENTITIES) or some of its rows; any order, lineage is derived.

    Returns:
        Definitions to merge with the schema's and the chores' (definitions.py).
    """
    rows = entities.values() if isinstance(entities, Mapping) else entities
    ordered = lineage_order(tuple(e.name for e in rows))
    made = [defs_for(e) for e in ordered]
    all_job = sync_all_job(ordered)
    all_schedule = _incremental_schedule(
        SYNC_ALL_SCHEDULE,
        all_job,
        ordered,
        "Every 15 minutes: every entity in lineage order (keap_sync_all_job), incremental from each cursor; "
        "entities without a time filter do a full pass.",
        # on by default: the one schedule that keeps every entity fresh (the cursor_fresh checks expect
        # it); the per-entity schedules are its alternatives, off (turning on both syncs twice a tick)
        default_status=DefaultScheduleStatus.RUNNING,
    )
    return Definitions(
        assets=[*(d.asset for d in made), *(d.deletions.asset for d in made)],
        asset_checks=[*(c for d in made for c in d.checks), *(d.deletions.check for d in made)],
        jobs=[*(d.job for d in made), all_job, *(d.deletions.job for d in made)],
        schedules=[*(d.schedule for d in made), all_schedule, *(d.deletions.schedule for d in made)],
    )
