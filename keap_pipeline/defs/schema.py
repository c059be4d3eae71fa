"""The sync_schema asset: applies the SQL migrations and reports the versions."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from keap_pipeline.db.errors import MigrationError
from keap_pipeline.db.migrate import migrate_report, status
from keap_pipeline.defs.resources import PostgresResource


@asset(
    group_name="keap",
    description="The sync schema (sql/): tables, functions, triggers, indexes, realtime, partitions, RLS.",
    kinds={"postgres"},
)
def sync_schema(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    """Apply pending migrations and changed repeatable files; metadata lists what was applied and the version."""
    url = postgres.url()
    try:
        report = migrate_report(url)
    except MigrationError as err:
        raise Failure(
            description=f"migration failed; fix the file named below or roll back: {err}",
        ) from None
    applied = report.versioned
    states = status(url)
    for m in applied:
        context.log.info(f"applied migration {m.name}")
    for r in report.repeatable:
        context.log.info(f"applied repeatable {r.label}")
    current = max((s.version for s in states if s.applied_at), default=0)
    return MaterializeResult(
        metadata={
            "database": MetadataValue.text(postgres.safe_url()),
            "current_version": current,
            "applied_now": MetadataValue.json([m.name for m in applied]),
            "repeatable_applied_now": MetadataValue.json([r.label for r in report.repeatable]),
            "migrations": MetadataValue.md(
                "| version | name | checksum |\n|---|---|---|\n"
                + "\n".join(f"| {s.version} | {s.name} | `{s.checksum[:12]}` |" for s in states)
            ),
        }
    )
