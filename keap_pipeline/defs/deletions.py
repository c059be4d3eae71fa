"""The Dagster shell of the reconcile passes (deletions in Keap), generated per entity of the table.

For each entity (called by the factory in defs.entities): the asset ``keap_<name>_deletions``
(downstream of ``keap_<name>``, in the keap_api pool), its config class (``<Name>DeletionsConfig``),
its check ``keap_<name>_deletions_safety`` (fails with the figure when the safety stop held deletions
back), the job ``keap_<name>_deletions_job`` and the daily schedule ``keap_<name>_deletions_schedule``.
The work is pipeline.reconcile's; this module wires config, resources and metadata to it.
"""

# No `from __future__ import annotations` here: Dagster reads the generated functions'
# annotations (the config class) at definition time.

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pydantic
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    Config,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    asset_check,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from keap_pipeline.db import reconcile as db
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import Entity
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.pipeline.reconcile import (
    ReconcileReport,
    ReconcileSettings,
    confirm_pass,
    reconcile_entity,
)

# daily at 03:05 UTC: just after an incremental tick (every 15 minutes), at a quiet hour; the
# entities' passes queue in the keap_api pool
DELETIONS_CRON = "5 3 * * *"
_DEFAULTS = ReconcileSettings()


def deletions_name(entity: Entity) -> str:
    """The entity's reconcile asset (and op) name: ``keap_<name>_deletions``."""
    return f"keap_{entity.name}_deletions"


class DeletionsConfig(Config):
    """How a run of a keap_<name>_deletions asset reconciles (each entity has its subclass)."""

    max_share: float = Field(
        default=_DEFAULTS.max_share, ge=0, le=1,
        description="stop before deleting more than this share of the live rows (0.02 = 2%); nothing is deleted then",
    )
    max_count: int = Field(default=_DEFAULTS.max_count, ge=0, description="stop before deleting more than this many rows")
    confirm_pass: str = Field(
        default="",
        description="the id of a stopped pass whose recorded deletions a person reviewed: apply them (no Keap request)",
    )
    page_size: int = Field(default=_DEFAULTS.page_size, ge=1, le=1000, description="ids per request (1000 is cheapest)")
    quota_reserve_share: float = Field(
        default=_DEFAULTS.quota_reserve_share, ge=0, lt=1,
        description="share of the day's quota kept for the incremental syncs: a pass the rest would not cover is skipped",
    )
    clock_skew_seconds: float = Field(
        default=_DEFAULTS.clock_skew_seconds, ge=0, le=86_400,
        description="rows Keap updated up to this long before the pass started are kept too",
    )
    lock_wait_seconds: float = Field(
        default=300.0, ge=0, le=86_400, description="wait this long for another pass of the entity, then fail naming it"
    )
    lock_timeout_seconds: float = Field(
        default=_DEFAULTS.lock_timeout_seconds, ge=0, le=3_600,
        description="the longest wait for one row lock while applying",
    )
    max_changes: int = Field(
        default=_DEFAULTS.max_changes, ge=1,
        description="the most changes one transaction of soft deletes streams to realtime subscribers (a row and its"
        " sync_status row each)",
    )

    def settings(self) -> ReconcileSettings:
        """The pipeline's settings from this config."""
        return ReconcileSettings(
            max_share=self.max_share, max_count=self.max_count, page_size=self.page_size,
            quota_reserve_share=self.quota_reserve_share, clock_skew_seconds=self.clock_skew_seconds,
            lock_wait_seconds=self.lock_wait_seconds, lock_timeout_seconds=self.lock_timeout_seconds,
            max_changes=self.max_changes,
        )


def _metadata(report: ReconcileReport) -> dict[str, MetadataValue | int | float | str]:
    meta: dict[str, MetadataValue | int | float | str] = {
        "status": MetadataValue.text(report.status),
        "pass_id": MetadataValue.text(report.pass_id),
        "listed": report.listed,
        "live": report.live,
        "missing": report.missing,
        "deleted": report.deleted,
        "restored": report.restored,
        "kept_recent": report.kept_recent,
        "deleted_here_too": report.deleted_here_too,
        "would_delete": report.missing if report.status == db.STOPPED else 0,
        "share_missing": round(report.share, 6),
        "pages": report.pages,
        "requests": report.requests,
        "estimated_requests": report.estimated_requests,
        "database_seconds": round(report.database_seconds, 3),
        "seconds": round(report.seconds, 3),
        "reason": MetadataValue.text(report.reason or "-"),
    }
    # left out, not -1, where Keap reported no quota (as the syncs' quota_left): a plotted -1 reads as a figure
    if report.quota_share is not None:
        meta["quota_share"] = round(report.quota_share, 6)
    if report.quota_available is not None:
        meta["quota_left"] = report.quota_available
    return meta


def _asset(entity: Entity, upstream: AssetKey, config_class: type[DeletionsConfig], pool: str, group: str) -> AssetsDefinition:
    def deletions(
        context: AssetExecutionContext, config: DeletionsConfig, keap: KeapResource, postgres: PostgresResource
    ) -> Iterator[MaterializeResult]:
        """One reconcile pass (or, with confirm_pass, a stopped pass's deletions applied)."""

        def progress(report: ReconcileReport) -> None:
            if report.pages % 100 == 0:
                context.log.info(f"{entity.name}: {report.pages} pages, {report.listed} ids")

        try:
            if config.confirm_pass:
                deleted = confirm_pass(
                    postgres.url(), entity, config.confirm_pass,
                    lock_timeout_seconds=config.lock_timeout_seconds, lock_wait_seconds=config.lock_wait_seconds,
                    max_changes=config.max_changes,
                )
                context.log.info(f"{entity.name}: pass {config.confirm_pass} confirmed, {deleted} soft-deleted")
                yield MaterializeResult(
                    metadata={"status": MetadataValue.text(db.CONFIRMED), "pass_id": config.confirm_pass,
                              "deleted": deleted, "requests": 0}
                )
                return
            with keap.client() as client:
                report = reconcile_entity(
                    client, postgres.url(), entity, config.settings(), run_id=context.run.run_id, progress=progress,
                )
        except (KeapPipelineError, ValueError) as err:
            raise Failure(description=f"{entity.name} reconcile failed, nothing was deleted: {err}") from None
        except psycopg.OperationalError as err:
            raise Failure(
                description=f"{entity.name} reconcile failed, the database is unreachable ({postgres.safe_url()}): "
                f"{str(err).strip()}; nothing was deleted, the next pass starts over"
            ) from None
        context.log.info(report.summary())
        if report.status == db.SKIPPED:
            # nothing materialized (the asset is skipped); the reason is on the asset's history
            context.log.warning(f"{entity.name}: {report.reason}")
            context.log_event(AssetObservation(asset_key=context.asset_key, metadata=_metadata(report)))
            return
        if report.status == db.INTERRUPTED:
            raise Failure(description=report.reason or "interrupted; nothing was deleted", metadata=_metadata(report))
        yield MaterializeResult(metadata=_metadata(report))

    deletions.__annotations__["config"] = config_class
    deletions.__doc__ = f"Soft-delete the {entity.target_table} rows Keap no longer lists (a reconcile pass)."
    cost = "ids only (fields=id)" if entity.id_fields else "whole records (the endpoint takes no fields)"
    confirm = "; each id missing from the listing is confirmed gone with a get" if entity.confirm_missing else ""
    return asset(
        name=deletions_name(entity),
        deps=[upstream],
        pool=pool,
        group_name=group,
        kinds={"postgres", "python"},
        output_required=False,
        description=(
            f"Deletions in Keap -> {entity.target_table}: a reconcile pass lists every {entity.name} id "
            f"(one request per 1,000, {cost}{confirm}) and soft-deletes the rows Keap no longer lists (audited as "
            "keap DELETE, never queued back); re-listed rows are restored. Stops before deleting more than the "
            "configured share or count (check keap_*_deletions_safety)."
        ),
    )(deletions)


def safety_check(entity: Entity, asset_key: AssetKey) -> AssetChecksDefinition:
    """``keap_<name>_deletions_safety``: fail (ERROR) while the latest pass is stopped by the safety limits."""

    @asset_check(
        asset=asset_key,
        name=f"{asset_key.path[-1]}_safety",
        description=f"The latest {entity.name} reconcile pass deleted within the limits (or a person confirmed it).",
    )
    def _check(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
        """Fail with the figure when the safety stop held deletions back; warn when the last pass did not complete."""
        with postgres.connect() as conn:
            last = db.latest_judged_pass(conn, entity.name)
            pending = db.pending_count(conn, last.id) if last is not None and last.status == db.STOPPED else 0
        if last is None:
            return AssetCheckResult(passed=True, description="no reconcile pass yet", metadata={"would_delete": 0})
        metadata: dict[str, int | float | MetadataValue] = {
            "pass_id": MetadataValue.text(str(last.id)),
            "status": MetadataValue.text(last.status),
            "live": last.live or 0,
            "deleted": last.deleted or 0,
            "would_delete": pending,
            "share": round((last.missing or 0) / last.live, 6) if last.live else 0.0,
            "age_hours": round((datetime.now(UTC) - last.started_at).total_seconds() / 3600, 1),
        }
        if last.status == db.STOPPED:
            return AssetCheckResult(
                passed=False, severity=AssetCheckSeverity.ERROR, metadata=metadata,
                description=f"{last.reason}; or run {asset_key.path[-1]} with config confirm_pass: {last.id}",
            )
        if last.status in (db.INTERRUPTED, db.FAILED):
            return AssetCheckResult(
                passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata,
                description=f"the latest pass did not complete (nothing deleted): {last.reason}",
            )
        return AssetCheckResult(
            passed=True, metadata=metadata,
            description=f"latest pass {last.status}: {last.deleted or 0} soft-deleted, {last.restored or 0} restored",
        )

    return _check


def _daily(name: str, job: UnresolvedAssetJobDefinition, entity: Entity) -> ScheduleDefinition:
    def daily(context: ScheduleEvaluationContext) -> RunRequest:
        """One reconcile pass a day."""
        try:
            tick = context.scheduled_execution_time.astimezone(UTC)
        except Exception:  # a manual evaluation has no time (dagster raises its private CheckError)
            tick = datetime.now(UTC)
        return RunRequest(run_key=f"deletions-{tick:%Y-%m-%d}", tags={"keap_pipeline/mode": "reconcile"})

    return schedule(
        name=name,
        job=job,
        cron_schedule=DELETIONS_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"A reconcile pass of {entity.name} every day (deletions in Keap), in the keap_api pool.",
    )(daily)


@dataclass(frozen=True)
class DeletionDefs:
    """What the factory made for one entity's reconcile passes."""

    config: type[DeletionsConfig]
    asset: AssetsDefinition
    check: AssetChecksDefinition
    job: UnresolvedAssetJobDefinition
    schedule: ScheduleDefinition


def deletion_defs(entity: Entity, *, upstream: AssetKey, pool: str, group: str) -> DeletionDefs:
    """The reconcile asset, config, check, job and schedule of one entity.

    Args:
        entity: a row of the entity table.
        upstream: the entity's sync asset (the pass runs downstream of it).
        pool: the Dagster pool of everything that calls Keap.
        group: the asset group.

    Returns:
        The generated definitions.
    """
    config_class = pydantic.create_model(
        f"{entity.name.capitalize()}DeletionsConfig",
        __base__=DeletionsConfig,
        __module__=__name__,
        __doc__=f"How a {deletions_name(entity)} run reconciles (the Launchpad offers and checks these values).",
    )
    made = _asset(entity, upstream, config_class, pool, group)
    key = AssetKey(deletions_name(entity))
    job = define_asset_job(
        f"{deletions_name(entity)}_job", selection=[key],
        description=f"On demand: a reconcile pass of {entity.name} (deletions in Keap), or a stopped pass confirmed.",
    )
    return DeletionDefs(
        config=config_class,
        asset=made,
        check=safety_check(entity, key),
        job=job,
        schedule=_daily(f"{deletions_name(entity)}_schedule", job, entity),
    )
