"""The sync_health asset: public.sync_health recorded every 15 minutes, with checks that warn when it worsens.

Each materialization records, per entity, numeric metadata the Dagster UI plots across
materializations (lag, open dead letters, open conflicts, queue depth, errors, unresolved links,
soft-deleted and live records). Its checks (severity WARN) compare with the previous
materialization: dead letters grew, open conflicts grew, or an entity's lag passed the schedule's
interval. The same job runs every entity's ``keap_<name>_cursor_fresh`` check (severity ERROR when
no sync completes for a long while), so freshness is judged on a clock of its own and not only
inside the runs that sync. Why an asset with checks and not an observable source asset:
docs/architecture.md.
"""

# No `from __future__ import annotations` here: Dagster reads the asset function's annotations.

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

from keap_pipeline.db.health import EntityHealth, compact_counters, read_sync_health
from keap_pipeline.defs.entities import GROUP, SCHEDULE_INTERVAL, asset_name
from keap_pipeline.defs.entity_checks import cursor_fresh_key
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import Entity, lineage_order

HEALTH_ASSET = "sync_health"
HEALTH_JOB = "sync_health_job"
HEALTH_SCHEDULE = "sync_health_schedule"
# every 15 minutes, 7 minutes after the sync ticks (*/15): the tick's syncs have had time to finish,
# so a lag above the interval means a tick's sync did not complete, not that it is still running
HEALTH_CRON = "7,22,37,52 * * * *"
DEAD_LETTERS_GROWING = "sync_health_dead_letters_growing"
CONFLICTS_GROWING = "sync_health_conflicts_growing"
LAG = "sync_health_lag"
# the per-entity figures plotted; metadata keys are "<entity>_<figure>" (e.g. contacts_lag_minutes)
FIGURES = (
    "lag_minutes", "dead_letters", "open_conflicts", "queue_pending", "queue_failed", "queue_unsupported", "errors",
    "unresolved_links", "soft_deleted", "linked_to_deleted_parent", "records",
)


def _minutes(lag: timedelta | None) -> float | None:
    return None if lag is None else round(lag.total_seconds() / 60, 1)


def figures(row: EntityHealth) -> dict[str, int | float]:
    """The plotted numbers of one entity (the lag is left out while no sync has completed)."""
    numbers: dict[str, int | float | None] = {
        "lag_minutes": _minutes(row.sync_lag),
        "dead_letters": row.open_dead_letters,
        "open_conflicts": row.open_conflicts,
        "queue_pending": row.queue_pending,
        "queue_failed": row.queue_failed,
        "queue_unsupported": row.queue_unsupported,
        "errors": row.errors,
        "unresolved_links": row.unresolved_links,
        "soft_deleted": row.soft_deleted,
        "linked_to_deleted_parent": row.linked_to_deleted_parent,
        "records": row.total_records,
    }
    return {k: v for k, v in numbers.items() if v is not None}


def _table(rows: Mapping[str, EntityHealth]) -> str:
    head = "| entity | records | errors | conflicts open | queue pending / failed | dead letters | unresolved links | soft-deleted | lag |"
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        lag = _minutes(r.sync_lag)
        lines.append(
            f"| {name} | {r.total_records:,} | {r.errors:,} | {r.open_conflicts:,} | {r.queue_pending:,} / {r.queue_failed:,}"
            f" | {r.open_dead_letters if r.open_dead_letters is not None else '-'} | {r.unresolved_links:,}"
            f" | {r.soft_deleted:,} | {'never synced' if lag is None else f'{lag} min'} |"
        )
    return "\n".join(lines)


def previous_figures(context: AssetExecutionContext) -> dict[str, float] | None:
    """The numeric metadata of the asset's last materialization before this run's, or None."""
    event = context.instance.get_latest_materialization_event(AssetKey(HEALTH_ASSET))
    if event is None or event.asset_materialization is None:
        return None
    out: dict[str, float] = {}
    for key, value in event.asset_materialization.metadata.items():
        number = getattr(value, "value", None)
        if isinstance(number, int | float) and not isinstance(number, bool):
            out[key] = float(number)
    return out


def grown(
    previous: Mapping[str, float] | None, rows: Mapping[str, EntityHealth], figure: str
) -> list[tuple[str, float, float]]:
    """The entities whose figure is higher than at the previous materialization: (entity, before, now)."""
    if previous is None:
        return []
    out = []
    for name, row in rows.items():
        now = figures(row).get(figure)
        before = previous.get(f"{name}_{figure}")
        if now is not None and before is not None and now > before:
            out.append((name, before, float(now)))
    return out


def _growth_check(
    check: str, what: str, previous: Mapping[str, float] | None, rows: Mapping[str, EntityHealth], figure: str,
    hint: str,
) -> AssetCheckResult:
    more = grown(previous, rows, figure)
    metadata: dict[str, Any] = {f"{name}_{figure}": value for name, row in rows.items() if (value := figures(row).get(figure)) is not None}
    metadata["grew"] = len(more)
    if previous is None:
        text = f"first observation: nothing to compare the {what} with"
    elif not more:
        text = f"no entity has more {what} than at the previous observation"
    else:
        text = "; ".join(f"{name}: {before:g} -> {now:g}" for name, before, now in more) + f" {what}; {hint}"
    return AssetCheckResult(
        check_name=check, passed=not more, severity=AssetCheckSeverity.WARN, description=text, metadata=metadata,
    )


def _lag_check(rows: Mapping[str, EntityHealth], allowed: timedelta) -> AssetCheckResult:
    late = [(name, r.sync_lag) for name, r in rows.items() if r.sync_lag is None or r.sync_lag > allowed]
    lags = [m for r in rows.values() if (m := _minutes(r.sync_lag)) is not None]
    metadata: dict[str, Any] = {
        "allowed_minutes": allowed.total_seconds() / 60,
        "max_lag_minutes": max(lags) if lags else -1.0,
        "late_entities": len(late),
    }
    if not late:
        text = f"every entity completed a sync within the last {allowed.total_seconds() / 60:g} minutes"
    else:
        text = "; ".join(
            f"{name}: {'no sync has completed yet' if lag is None else f'last complete sync started {_minutes(lag)} min ago'}"
            for name, lag in late
        ) + " (is keap_sync_all_schedule running, and do its runs succeed?)"
    return AssetCheckResult(check_name=LAG, passed=not late, severity=AssetCheckSeverity.WARN, description=text, metadata=metadata)


def health_asset(entities: Iterable[Entity], lag_allowed: timedelta = SCHEDULE_INTERVAL) -> AssetsDefinition:
    """The ``sync_health`` asset and its three checks, over the entities given (downstream of their assets).

    Args:
        entities: the entity table's rows (their assets are the lineage).
        lag_allowed: the longest lag that does not warn: the sync schedule's interval.

    Returns:
        The asset with its checks (check_specs), evaluated in the same step.
    """
    ordered = lineage_order(tuple(e.name for e in entities))
    key = AssetKey(HEALTH_ASSET)

    @asset(
        name=HEALTH_ASSET,
        deps=[asset_name(e) for e in ordered],
        group_name=GROUP,
        kinds={"postgres"},
        description="Health at a glance (public.sync_health): per entity records, errors, open conflicts, outbound "
        "queue pending / failed, open dead letters, unresolved links, soft-deleted rows and the lag since the last "
        "complete sync; recorded every 15 minutes so the UI plots them.",
        check_specs=[
            AssetCheckSpec(DEAD_LETTERS_GROWING, asset=key, description="Open dead letters grew since the previous observation."),
            AssetCheckSpec(CONFLICTS_GROWING, asset=key, description="Open conflicts grew since the previous observation."),
            AssetCheckSpec(LAG, asset=key, description=f"An entity's last complete sync started more than {lag_allowed.total_seconds() / 60:g} minutes ago."),
        ],
    )
    def sync_health(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
        """Fold the counters, read public.sync_health, record it and judge it against the previous observation."""
        previous = previous_figures(context)
        try:
            with postgres.connect() as conn:
                before, after = compact_counters(conn)
                conn.commit()
                rows = read_sync_health(conn)
        except psycopg.OperationalError as err:
            raise Failure(
                description=f"sync_health: the database is unreachable ({postgres.safe_url()}): {str(err).strip()}; "
                "check KEAP_PIPELINE_DATABASE_URL and that the server runs."
            ) from None
        context.log.info(f"sync_health: folded {before:,} counter rows into {after:,}")
        metadata: dict[str, Any] = {
            f"{name}_{figure}": value for name, row in rows.items() for figure, value in figures(row).items()
        }
        metadata["dead_letters"] = sum(r.open_dead_letters or 0 for r in rows.values())
        metadata["open_conflicts"] = sum(r.open_conflicts for r in rows.values())
        metadata["queue_pending"] = sum(r.queue_pending for r in rows.values())
        metadata["queue_failed"] = sum(r.queue_failed for r in rows.values())
        metadata["queue_unsupported"] = sum(r.queue_unsupported for r in rows.values())
        lags = [m for r in rows.values() if (m := _minutes(r.sync_lag)) is not None]
        if lags:
            metadata["max_lag_minutes"] = max(lags)
        metadata["health"] = MetadataValue.md(_table(rows))
        metadata["counter_rows"] = after
        return MaterializeResult(
            metadata=metadata,
            check_results=[
                _growth_check(
                    DEAD_LETTERS_GROWING, "open dead letters", previous, rows, "dead_letters",
                    "see `keap-pipeline dead-letters list`",
                ),
                _growth_check(
                    CONFLICTS_GROWING, "open conflicts", previous, rows, "open_conflicts",
                    "resolve them in sync_conflicts (docs/operations.md)",
                ),
                _lag_check(rows, lag_allowed),
            ],
        )

    return sync_health


def health_definitions(entities: Mapping[str, Entity] | Iterable[Entity]) -> Definitions:
    """``sync_health``, ``sync_health_job`` (the asset and every entity's cursor_fresh check) and its schedule.

    Args:
        entities: the entity table (ENTITIES) or some of its rows.

    Returns:
        Definitions to merge with the entities' (whose checks the job runs).
    """
    rows = tuple(entities.values() if isinstance(entities, Mapping) else entities)
    health = health_asset(rows)
    job = define_asset_job(
        HEALTH_JOB,
        selection=AssetSelection.assets(health)
        | AssetSelection.checks(*(cursor_fresh_key(AssetKey(asset_name(e))) for e in rows)),
        description="Record sync_health and check it; also runs each entity's cursor_fresh check, on this job's clock.",
    )
    schedule = ScheduleDefinition(
        name=HEALTH_SCHEDULE,
        job=job,
        cron_schedule=HEALTH_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every 15 minutes (7 minutes after the sync ticks): record sync_health and run the freshness checks.",
    )
    return Definitions(assets=[health], jobs=[job], schedules=[schedule])
