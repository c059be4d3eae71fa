"""The Dagster shell of the outbound sender: asset keap_outbound, keap_push_job, keap_push_sensor, check keap_outbound_queue.

Why a sensor and not a frequent schedule: the queue is empty most of the time. The sensor asks
PostgreSQL every 30 seconds, with one query over partial indexes, whether due items wait (or
items of a pusher that died, or items to keep as unsupported), and starts a run only then, and
never while one is queued or running; a schedule every minute would start a run (and take the
``keap_api`` pool from the syncs) every minute whether or not there is anything to send, filling
the run history with empty runs. Its latency is the sensor interval plus a run's start-up.
"""

# No `from __future__ import annotations`: Dagster reads the asset's config annotation at definition time.

from contextlib import ExitStack

import psycopg
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)
from pydantic import Field

from keap_pipeline.db.load import ConflictStrategy, MergeRule
from keap_pipeline.db.outbound import due_work, queue_counts
from keap_pipeline.defs.entities import GROUP, KEAP_POOL
from keap_pipeline.defs.keap import KeapResource
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.errors import KeapPipelineError
from keap_pipeline.keap import RetryPolicy
from keap_pipeline.outbound.push import PushSettings, push
from keap_pipeline.outbound.specs import SUPPORTED_TABLES

ASSET = "keap_outbound"
PUSH_JOB = "keap_push_job"
SENSOR_INTERVAL_SECONDS = 30


class PushConfig(Config):
    """How a keap_outbound run pushes (the Launchpad offers and checks these values)."""

    strategy: ConflictStrategy = Field(
        default="keap_wins", description="a record changed in Keap since the app's edit: resolved as the ingestion resolves it"
    )
    merge_rule: MergeRule = Field(
        default="manual", description="for strategy merge: a field changed on both sides (manual = park the record)"
    )
    batch_size: int = Field(default=100, ge=1, le=1000, description="items claimed per batch")
    limit: int | None = Field(default=None, ge=1, description="at most this many items in the run (empty: all due)")
    max_seconds: float = Field(
        default=240.0, ge=1, le=86_400,
        description="stop claiming after this long, so the run hands the keap_api pool back to the syncs",
    )
    retry_failed: bool = Field(default=False, description="first make failed items pending again (after a fix)")
    quota_share: float | None = Field(
        default=None, gt=0, le=1, description="pace the push to this share of the key's limits (empty: the shared pacer alone)"
    )


@asset(
    name=ASSET,
    deps=["sync_schema"],
    pool=KEAP_POOL,
    group_name=GROUP,
    kinds={"postgres", "python"},
    description="App changes in sync_queue -> Keap (contacts, tags): conflicts checked as the ingestion checks them, "
    "written back in the completing transaction; other entities' items kept as unsupported.",
)
def keap_outbound(
    context: AssetExecutionContext, config: PushConfig, keap: KeapResource, postgres: PostgresResource
) -> MaterializeResult:
    """One push run: every due item of the entities the pusher sends."""
    settings = PushSettings(
        strategy=config.strategy, merge_rule=config.merge_rule, batch_size=config.batch_size, limit=config.limit,
        max_seconds=config.max_seconds, run_id=context.run.run_id[:8],
    )
    try:
        # the queue retries with backoff: one request retries only briefly
        # paced (as in production), Keap's limits bound the push: the reads take turns with the sends on one
        # client; unpaced (a sandbox), the reads get a client of their own and a batch is sent while the next
        # is read and marked (push_cli says why)
        clients = keap.clients(1 if keap.pacing else 2, quota_share=config.quota_share,
                               retry=RetryPolicy(max_retries=2, max_wait=30.0))
        reader, sender = clients[0], clients[-1]
        with ExitStack() as opened:
            for one in clients:
                opened.enter_context(one)
            report = push(
                reader, postgres.url(), retry_failed=config.retry_failed, settings=settings, senders=(sender,),
                progress=lambda r: context.log.info(f"push: {r.claimed} claimed, {r.sent} sent, {r.failed} failed"),
            )
    except (KeapPipelineError, ValueError) as err:
        raise Failure(description=f"push failed: {err}") from None
    except psycopg.OperationalError as err:
        raise Failure(
            description=f"push failed, the database is unreachable ({postgres.safe_url()}): {str(err).strip()}; "
            "items in flight are recovered by the next push"
        ) from None
    context.log.info(report.summary())
    metadata = {k: MetadataValue.text(v) if isinstance(v, str) else v for k, v in report.as_metadata().items()}
    if report.stopped_early:
        raise Failure(description=f"stopped early, what was sent is written back: {report.stopped_early}", metadata=metadata)
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset=AssetKey(ASSET),
    name="keap_outbound_queue",
    description="Outbound items that failed (Keap refused them, or their attempts ran out) or are unsupported "
    "(an entity without a Keap write path yet): how many, and why.",
)
def keap_outbound_queue(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    """Warn while failed or unsupported items wait; metadata: counts per entity and the commonest reasons."""
    with postgres.connect() as conn:
        counts = queue_counts(conn)
    failed = sum(c.failed for c in counts)
    unsupported = sum(c.unsupported for c in counts)
    metadata: dict[str, int | MetadataValue] = {"failed": failed, "unsupported": unsupported}
    for c in counts:
        metadata[f"{c.entity_type}_failed"] = c.failed
        metadata[f"{c.entity_type}_unsupported"] = c.unsupported
        metadata[f"{c.entity_type}_pending"] = c.pending
        metadata[f"{c.entity_type}_held"] = c.held
        metadata[f"{c.entity_type}_in_flight"] = c.in_flight
    reasons = [f"- {n} × {c.entity_type}: {r}" for c in counts for r, n in c.reasons[:5]]
    metadata["reasons"] = MetadataValue.md("\n".join(reasons) or "none")
    return AssetCheckResult(
        passed=failed == 0 and unsupported == 0,
        severity=AssetCheckSeverity.WARN,
        description="nothing failed or unsupported"
        if not (failed or unsupported)
        else f"{failed} failed and {unsupported} unsupported outbound item(s); see `keap-pipeline push` "
        "(fix the rows, then `keap-pipeline push --retry-failed`)",
        metadata=metadata,
    )


keap_push_job = define_asset_job(
    PUSH_JOB,
    selection=[AssetKey(ASSET)],
    description="Send the outbound queue's due app changes to Keap (keap_outbound), in the keap_api pool.",
)

_ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


@sensor(
    name="keap_push_sensor",
    job=keap_push_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description="Every 30 s: starts keap_push_job when the outbound queue holds due items (or a dead pusher's items "
    "in flight, or items to keep as unsupported), never while a push run is queued or running.",
)
def keap_push_sensor(context: SensorEvaluationContext, postgres: PostgresResource) -> RunRequest | SkipReason:
    """Start a push when there is work; skip (saying why) otherwise."""
    active = context.instance.get_runs(RunsFilter(job_name=PUSH_JOB, statuses=_ACTIVE), limit=1)
    if active:
        return SkipReason(f"a {PUSH_JOB} run is in progress ({active[0].run_id[:8]})")
    try:
        with postgres.connect() as conn:
            work = due_work(conn, SUPPORTED_TABLES)
    except psycopg.Error as err:
        return SkipReason(f"cannot read the outbound queue: {type(err).__name__}")
    if not work.any:
        return SkipReason("no due outbound items")
    return RunRequest(
        tags={"keap_pipeline/due": str(work.due), "keap_pipeline/orphaned": str(work.orphaned)},
    )


def outbound_definitions() -> Definitions:
    """The asset, its check, the job and the sensor (definitions.py merges them)."""
    return Definitions(
        assets=[keap_outbound], asset_checks=[keap_outbound_queue], jobs=[keap_push_job], sensors=[keap_push_sensor]
    )
