"""The asset checks of a Keap entity, generated from its row: dead letters, cursor freshness, unresolved links."""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from keap_pipeline.db.cursors import INCREMENTAL, get_cursor
from keap_pipeline.db.dead_letters import dead_letter_summary
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


def cursor_fresh_check(entity: Entity, asset_key: AssetKey, max_age: timedelta) -> AssetChecksDefinition:
    """``keap_<name>_cursor_fresh``: fail when the entity's incremental cursor did not move within max_age.

    For a TIME entity the cursor is the highest update time the schedule's syncs committed; for an
    ID or FULL entity (a full pass each run) it is the row its full passes keep in the same
    (entity, incremental) scope, so its last commit says when a pass last loaded a batch.
    """
    what = "The incremental cursor" if entity.cursor is CursorKind.TIME else "The full pass's cursor"

    @asset_check(
        asset=asset_key,
        name=f"{asset_key.path[-1]}_cursor_fresh",
        description=f"{what} of {entity.name} moved within the schedule's allowance.",
    )
    def _check(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
        """Fail when no sync committed within two schedule intervals (plus slack)."""
        with postgres.connect() as conn:
            cursor = get_cursor(conn, entity.name, INCREMENTAL)
        if cursor is None:
            return AssetCheckResult(
                passed=False,
                description="no incremental sync has committed yet",
                metadata={"max_age_minutes": max_age.total_seconds() / 60},
            )
        age = datetime.now(UTC) - cursor.updated_at
        return AssetCheckResult(
            passed=age <= max_age,
            description=f"last incremental commit {_minutes(age)} min ago",
            metadata={
                "cursor": MetadataValue.text(cursor.value.isoformat()),
                "last_commit": MetadataValue.text(cursor.updated_at.isoformat()),
                "age_minutes": _minutes(age),
                "max_age_minutes": max_age.total_seconds() / 60,
                "records_total": cursor.records_total,
            },
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
