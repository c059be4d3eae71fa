"""The asset checks of a Keap entity, generated from its row: dead letters, freshness of its syncs, unresolved links."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

from keap_pipeline.db.dead_letters import dead_letter_summary
from keap_pipeline.db.health import freshness
from keap_pipeline.db.link_health import parent_links, unresolved_links
from keap_pipeline.defs.resources import PostgresResource
from keap_pipeline.entities import CursorKind, Entity


def _minutes(age: timedelta) -> float:
    return round(age.total_seconds() / 60, 1)


def dead_letters_check(entity: Entity, asset_key: AssetKey) -> AssetChecksDefinition:
    """``keap_<name>_dead_letters``: warn while records of the entity wait in the dead-letter table."""

    @asset_check(
        asset=asset_key,
        name=f"{asset_key.path[-1]}_dead_letters",
        description=f"Open dead letters of {entity.name}: how many, and why.",
    )
    def _check(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
        """Warn while records wait in the dead-letter table; metadata lists the commonest reasons."""
        with postgres.connect() as conn:
            count, reasons = dead_letter_summary(conn, entity.name)
        return AssetCheckResult(
            passed=count == 0,
            severity=AssetCheckSeverity.WARN,
            description="no open dead letters"
            if count == 0
            else f"{count} {entity.name} could not be loaded; see `keap-pipeline dead-letters list --entity {entity.name}`",
            metadata={
                "open_dead_letters": count,
                "reasons": MetadataValue.md("\n".join(f"- {n} × {r}" for r, n in reasons) or "none"),
            },
        )

    return _check


def cursor_fresh_key(asset_key: AssetKey) -> AssetCheckKey:
    """The key of an entity asset's freshness check, ``keap_<name>_cursor_fresh`` (sync_health_job runs it)."""
    return AssetCheckKey(asset_key, f"{asset_key.path[-1]}_cursor_fresh")


def syncs_a_window(context: AssetCheckExecutionContext, asset_name: str) -> bool:
    """Whether the check runs inside a run that syncs a window of the asset (a partition or a backfill).

    Such a run reads the past, not what changed since the last sync, so it neither refreshes the
    entity nor explains why it is stale. The schedule's runs are partitioned too, but incremental.
    """
    try:
        run = context.run
    except Exception:  # dagster raises its (private) CheckError when the context has no run
        return False
    tags = run.tags or {}
    if PARTITION_NAME_TAG not in tags and ASSET_PARTITION_RANGE_START_TAG not in tags:
        return False
    run_config: Mapping[str, Any] = run.run_config or {}
    ops: Mapping[str, Any] = run_config.get("ops") or {}
    config: Mapping[str, Any] = (ops.get(asset_name) or {}).get("config") or {}
    return config.get("mode", "window") == "window"


def cursor_fresh_check(entity: Entity, asset_key: AssetKey, max_age: timedelta) -> AssetChecksDefinition:
    """``keap_<name>_cursor_fresh``: fail when no sync of the entity completed within max_age.

    Fresh means: the last sync that completed and read Keap up to the present (recorded by the
    pipeline, keap_pipeline.db.health) started within max_age, so every change made in Keap before
    then is loaded. A sync that finds nothing new completes too, so a quiet account stays fresh.
    Stale is an ERROR, but a WARN while a run of the entity is committing batches (a long first load
    or backfill holds the entity's run lock, and the schedule's runs wait for it) and inside a run
    that syncs a window (a backfill reads the past; it is not why the entity is stale).
    sync_health_job runs this check every 15 minutes, on a clock independent of the syncs.
    """
    name = asset_key.path[-1]

    @asset_check(
        asset=asset_key,
        name=f"{name}_cursor_fresh",
        description=f"A sync of {entity.name} that read Keap up to the present completed within the allowance.",
    )
    def _check(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
        """Fail when no complete sync started within two schedule intervals (plus slack)."""
        with postgres.connect() as conn:
            fresh = freshness(conn, entity)
        metadata: dict[str, float | MetadataValue] = {"max_age_minutes": max_age.total_seconds() / 60}
        if fresh.fresh_as_of is not None and fresh.succeeded_at is not None:
            age = fresh.now - fresh.fresh_as_of
            metadata["age_minutes"] = _minutes(age)
            metadata["last_complete_sync_started"] = MetadataValue.text(fresh.fresh_as_of.isoformat())
            metadata["last_complete_sync_finished"] = MetadataValue.text(fresh.succeeded_at.isoformat())
            if age <= max_age:
                return AssetCheckResult(
                    passed=True, description=f"last complete sync started {_minutes(age)} min ago", metadata=metadata
                )
            stale = f"the last complete sync started {_minutes(age)} min ago"
        else:
            stale = "no sync has completed yet"
        progressing = False
        if fresh.last_commit_at is not None:
            commit_age = fresh.now - fresh.last_commit_at
            metadata["last_commit_age_minutes"] = _minutes(commit_age)
            progressing = commit_age <= max_age
        # (an entity without a time filter has no window: in a partitioned run it does a full pass)
        backfill = not progressing and entity.cursor is CursorKind.TIME and syncs_a_window(context, name)
        if progressing:
            why = "a run is loading it (a batch committed recently): fresh once that run completes"
        elif backfill:
            why = "this run syncs a window of the past; the incremental schedule is what keeps it fresh"
        else:
            why = f"is keap_sync_all_schedule (or {name}_incremental_schedule) running, and do its runs succeed?"
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN if progressing or backfill else AssetCheckSeverity.ERROR,
            description=f"{stale}; {why}",
            metadata=metadata,
        )

    return _check


def unresolved_links_check(entity: Entity, asset_key: AssetKey) -> AssetChecksDefinition:
    """``keap_<name>_unresolved_links``: warn while rows carry a Keap parent id but no uuid link yet.

    Such a row is expected for a while (an order loaded before its contact) and is linked set-based
    when the parent arrives; one that stays for long points at a parent missing from Keap or from
    the sync. Metadata holds counts and ages only, never an id or a value.
    """
    parents = ", ".join(link.parent for link in parent_links(entity))

    @asset_check(
        asset=asset_key,
        name=f"{asset_key.path[-1]}_unresolved_links",
        description=f"Rows of {entity.name} whose {parents} is not loaded yet: how many, and how old the oldest is.",
    )
    def _check(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
        """Warn (never fail the run) while links wait; metadata: counts and the oldest's age per parent."""
        with postgres.connect() as conn:
            links = unresolved_links(conn, entity)
        now = datetime.now(UTC)
        metadata: dict[str, int | float | MetadataValue] = {}
        waiting: list[str] = []
        oldest: datetime | None = None
        for link in links:
            age = _minutes(now - link.oldest_loaded_at) if link.oldest_loaded_at else 0.0
            metadata[f"{link.parent}_unresolved"] = link.rows
            metadata[f"{link.parent}_oldest_age_minutes"] = age
            if link.rows:
                waiting.append(f"{link.rows} without their {link.parent} ({link.link_column}), oldest {age} min")
            if link.oldest_loaded_at and (oldest is None or link.oldest_loaded_at < oldest):
                oldest = link.oldest_loaded_at
        metadata["unresolved_links"] = sum(link.rows for link in links)
        metadata["oldest_age_minutes"] = _minutes(now - oldest) if oldest else 0.0
        metadata["oldest_loaded_at"] = MetadataValue.text(oldest.isoformat() if oldest else "-")
        return AssetCheckResult(
            passed=not waiting,
            severity=AssetCheckSeverity.WARN,
            description="every Keap parent id is linked"
            if not waiting
            else f"{entity.name}: {'; '.join(waiting)}; they link when the parent is synced",
            metadata=metadata,
        )

    return _check


def entity_checks(entity: Entity, asset_key: AssetKey, cursor_max_age: timedelta) -> tuple[AssetChecksDefinition, ...]:
    """Every check of an entity: dead letters, cursor freshness and, for entities with parents, links."""
    checks = [dead_letters_check(entity, asset_key), cursor_fresh_check(entity, asset_key, cursor_max_age)]
    if parent_links(entity):
        checks.append(unresolved_links_check(entity, asset_key))
    return tuple(checks)
