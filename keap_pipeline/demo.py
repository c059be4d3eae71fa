"""`make demo`: the main job end to end on embedded defaults, then a summary. Exits by itself.

Starts the embedded PostgreSQL and the Keap sandbox (50,000 contacts, and tags, products, orders and
subscriptions scaled from them), materializes sync_schema and every entity in lineage order through
Dagster (stored in the same instance `make ui` opens) with a line per entity, changes some contacts
in the sandbox and some locally (some of them on both sides: conflicts), runs the incremental sync of
every entity, runs the database chores' jobs and prints what happened. Exits 1 when an entity did
not sync.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from keap_pipeline.db import embedded
from keap_pipeline.db.dead_letters import dead_letter_summary
from keap_pipeline.db.load import CONFLICT_STRATEGIES
from keap_pipeline.entities import ENTITIES, CursorKind, Entity, lineage_order
from keap_pipeline.keap import ApiKeyAuth, KeapClient
from keap_pipeline.local_stack import (
    DEMO_CONTACTS,
    SANDBOX_API_KEY,
    ensure_dagster_home,
    sandbox_state_file,
)
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

log = logging.getLogger("keap_pipeline.demo")


@dataclass(frozen=True)
class EntityRun:
    """What one entity's asset did in a demo run: its metadata, or why it has none."""

    entity: str
    metadata: dict[str, Any] | None
    problem: str | None = None

    def line(self) -> str:
        """One line: records, inserted, updated, unchanged, dead letters, seconds (or what went wrong)."""
        m = self.metadata
        if m is None:
            return f"{self.entity:<14} {self.problem}"
        return (
            f"{self.entity:<14} {m['records_seen']:>7,} records, {m['inserted']:,} inserted, {m['updated']:,} updated, "
            f"{m['unchanged']:,} unchanged, {m['dead_lettered']:,} dead letters, {m['seconds']:.1f} s"
        )


def _failure(result: Any, step: str) -> str | None:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key == step:
            data = event.event_specific_data
            described = getattr(getattr(data, "user_failure_data", None), "description", None)
            error = data.error
            while error is not None and error.cause is not None:  # the error the step's wrapper names
                error = error.cause
            text = described or (error.message if error is not None else "failed")
            return str(text).strip().splitlines()[0]
    return None


def _materialize(
    base_url: str, database_url: str, entities: tuple[Entity, ...], *, strategy: str, schema: bool = False
) -> dict[str, EntityRun]:
    """Run the entities' job as its incremental schedule would (with the checks), in the shared instance.

    The job is the one a user would launch: keap_sync_all_job (keap_<name>_job for one entity), with
    the schedule's run request (its partition range: what the run loads), recorded with the code
    location's origin so that `make ui` lists the run under its job and can re-execute it. With
    ``schema``, sync_schema is materialized first, as the UI's Materialize button does.
    """
    from dagster import AssetKey, DagsterInstance, build_schedule_context

    from keap_pipeline.definitions import defs
    from keap_pipeline.defs.entities import SYNC_ALL_JOB, asset_name, run_figures
    from keap_pipeline.defs.resources import PostgresResource
    from keap_pipeline.local_stack import run_job

    instance = DagsterInstance.get()
    # the resources read these (EnvVar), as in `make ui`; no secret goes into the run config
    environment = {"KEAP_BASE_URL": base_url, "KEAP_API_KEY": SANDBOX_API_KEY, "KEAP_PIPELINE_DATABASE_URL": database_url}
    # one process, the steps in lineage order (the default starts a process per step: slow for a
    # demo), and the run's events at INFO on the console
    basics: dict[str, Any] = {
        "execution": {"config": {"in_process": {}}}, "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    if schema:
        migrated = run_job(
            instance, "__ASSET_JOB", run_config=basics, asset_selection={AssetKey("sync_schema")},
            environment=environment,
        )
        if not migrated.success:
            raise SystemExit(f"sync_schema did not materialize: {_failure(migrated, 'sync_schema') or 'see the log above'}")
    every = len(entities) == len(ENTITIES)
    job_name = SYNC_ALL_JOB if every or len(entities) > 1 else f"{asset_name(entities[0])}_job"
    [schedule] = [s for s in defs.get_repository_def().schedule_defs if s.job_name == job_name]
    [request] = schedule.evaluate_tick(
        build_schedule_context(
            instance=instance, scheduled_execution_time=datetime.now(UTC),
            resources={"postgres": PostgresResource(database_url=database_url)},
        )
    ).run_requests or []  # the schedules always ask for a run
    ops = {
        asset_name(e): {"config": {"strategy": strategy, **({"mode": "incremental"} if e.cursor is CursorKind.TIME else {})}}
        for e in entities
    }
    result = run_job(
        instance,
        job_name,
        run_config={"ops": ops, **basics},
        tags={**request.tags, "keap_pipeline/demo": "incremental"},
        # a subset of the entities: the sync-all job with those assets selected (and their checks)
        asset_selection=None if every or len(entities) == 1 else {AssetKey(asset_name(e)) for e in entities},
        environment=environment,
    )
    runs: dict[str, EntityRun] = {}
    for e in entities:
        mats = result.asset_materializations_for_node(asset_name(e))
        if mats:
            runs[e.name] = EntityRun(e.name, run_figures({k: v.value for k, v in mats[0].metadata.items()}))
        else:
            failure = _failure(result, asset_name(e))
            runs[e.name] = EntityRun(
                e.name, None, f"FAILED: {failure}" if failure else "skipped: an entity it is loaded after did not complete"
            )
    return runs


def _chores(database_url: str) -> list[str]:
    """Run the database chores' jobs in the shared instance; their results in words."""
    from dagster import DagsterInstance

    from keap_pipeline.defs.maintenance import (
        audit_partitions_job,
        queue_retention_job,
        vacuum_analyze_job,
    )
    from keap_pipeline.defs.resources import PostgresResource

    lines: list[str] = []
    resources = {"postgres": PostgresResource(database_url=database_url)}
    for job_def, op_name in (
        (audit_partitions_job, "audit_partitions_op"), (vacuum_analyze_job, "vacuum_analyze_op"),
        (queue_retention_job, "queue_retention_op"),
    ):
        result = job_def.execute_in_process(resources=resources, instance=DagsterInstance.get(), raise_on_error=False)
        lines.append(f"{job_def.name}: {'succeeded' if result.success else 'FAILED'}")
        if result.success:
            lines.extend(f"  {line}" for line in result.output_for_node(op_name)["lines"])
    return lines


def _first_run(database_url: str) -> bool:
    """Whether no sync has stored a cursor in this database yet (a fresh KEAP_PIPELINE_HOME)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select to_regclass('keap_pipeline.sync_cursors') is not null").fetchone()
        if not row or not row[0]:
            return True
        stored = conn.execute("select exists (select from keap_pipeline.sync_cursors)").fetchone()
    return not (stored and stored[0])


def _count(conn: psycopg.Connection, table: str) -> int:
    schema, _, name = table.partition(".")
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, name))).fetchone()
    return int(row[0]) if row else 0


def _change_keap(client: KeapClient, ids: list[str], tag: str) -> None:
    for n, ident in enumerate(ids):
        client.update_contact(ident, {"family_name": f"Keap-{tag}-{n}"}, update_mask=["family_name"])
    client.create_contact(
        {"given_name": "Nadia", "family_name": "Demo-Created", "email_addresses": [{"email": "nadia@example.com", "field": "EMAIL1"}]}
    )


def _change_locally(database_url: str, keap_ids: list[str], tag: str) -> None:
    # as an app would: a plain UPDATE (audited as supabase, queued for Keap)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update public.sync_contacts set first_name = %s where keap_id = any(%s)", (f"App-{tag}", keap_ids)
        )


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m keap_pipeline.demo", description=__doc__)
    parser.add_argument("--contacts", type=int, default=DEMO_CONTACTS,
                        help=f"contacts in the sandbox; the other entities scale from it (default {DEMO_CONTACTS})")
    parser.add_argument("--strategy", default="merge", choices=CONFLICT_STRATEGIES,
                        help="conflict strategy of the runs (default merge)")
    parser.add_argument(
        "--entities", default=",".join(ENTITIES),
        help="comma-separated entities to sync (default: all, in lineage order); contacts always, the demo's edits are contacts'",
    )
    args = parser.parse_args(argv)
    try:
        entities = lineage_order(tuple({*(n.strip() for n in args.entities.split(",") if n.strip()), "contacts"}))
    except KeyError as err:
        parser.error(str(err))
    # the demo's own lines and the embedded server's start; everything else only from WARNING up (the
    # libraries' INFO lines, such as alembic's "setup plugin ..." while Dagster creates its storage,
    # and the pipeline's, which the runs' logs show, are not for this summary)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    for ours in ("keap_pipeline.demo", "keap_pipeline.db.embedded"):
        logging.getLogger(ours).setLevel(logging.INFO)
    started = time.monotonic()

    server = embedded.start()
    database_url = server.url
    ensure_dagster_home(database_url)
    log.info("embedded PostgreSQL: %s", database_url)
    config = SandboxConfig(port=0, contacts=args.contacts, limits=RateLimits.off(), api_key=SANDBOX_API_KEY,
                           state_file=str(sandbox_state_file()))
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        log.info("Keap sandbox: %s (%s contacts, API key %r; its changes are kept in %s for `make ui`)",
                 sandbox.base_url, f"{args.contacts:,}", SANDBOX_API_KEY, sandbox_state_file())

        log.info("\n1. sync_schema + %s through Dagster, in lineage order (%s)", ", ".join(e.name for e in entities),
                 "first run: everything up to now" if _first_run(database_url)
                 else "incremental from the cursors an earlier `make demo` stored")
        first = _materialize(sandbox.base_url, database_url, entities, strategy=args.strategy, schema=True)
        for run in first.values():
            log.info("   %s", run.line())
        if first["contacts"].metadata is None:
            raise SystemExit("contacts did not sync, so the demo's changes cannot follow; see the log above")

        log.info("\n2. changes: 20 contacts edited in Keap (+1 created), 10 edited in the app, 3 of them on both sides")
        with psycopg.connect(database_url) as conn:
            keap_ids = [r[0] for r in conn.execute(
                "select keap_id from public.sync_contacts order by keap_id::bigint limit 27")]
        # a tag per run, so that a second `make demo` changes the same contacts again
        tag = datetime.now(UTC).strftime("%H%M%S")
        with KeapClient(sandbox.base_url, ApiKeyAuth(SANDBOX_API_KEY), pacing=False) as client:
            _change_keap(client, keap_ids[:20], tag)
        _change_locally(database_url, keap_ids[17:27], tag)

        log.info("\n3. the incremental sync of every entity (from the stored cursors; the full passes re-read "
                 "and write nothing unchanged), conflict strategy %s", args.strategy)
        second = _materialize(sandbox.base_url, database_url, entities, strategy=args.strategy)
        for run in second.values():
            log.info("   %s", run.line())
        contacts = second["contacts"].metadata
        if contacts is not None:
            log.info("   contacts: %s conflicts %s", contacts["conflicts"], contacts["conflicts_by_strategy"])

    log.info("\n4. the database chores, as their Dagster jobs (the same the schedules launch)")
    for line in _chores(database_url):
        log.info("   %s", line)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select count(*) from public.sync_contacts").fetchone()
        no_email = conn.execute("select count(*) from public.sync_contacts where email is null").fetchone()
        open_conflicts = conn.execute("select count(*) from public.sync_conflicts where resolved_at is null").fetchone()
        queued = conn.execute("select count(*) from public.sync_queue where status = 'pending'").fetchone()
        audit = conn.execute("select sync_source, count(*) from public.sync_audit_log group by 1 order by 1").fetchall()
        dead_letters = {e.name: dead_letter_summary(conn, e.name) for e in entities}
        table_rows = {e.target_table: _count(conn, e.target_table) for e in entities}
    log.info("\nSummary")
    log.info("  rows                    %s", ", ".join(f"{t.partition('.')[2]} {n:,}" for t, n in table_rows.items()))
    log.info("  sync_contacts rows      %s (%s without an email)", rows[0] if rows else 0, no_email[0] if no_email else 0)
    log.info("  open conflicts          %s", open_conflicts[0] if open_conflicts else 0)
    log.info("  queued for Keap         %s (app edits; ingested rows are never echoed)", queued[0] if queued else 0)
    log.info("  audit rows by source    %s", ", ".join(f"{s}: {n}" for s, n in audit))
    for name, (dead, reasons) in dead_letters.items():
        log.info("  dead letters (open)     %s: %s%s", name, dead, "".join(f"\n      {n} × {r}" for r, n in reasons))
    log.info("  time                    %.1f s", time.monotonic() - started)
    log.info("\nOpen the Dagster UI on the same data: make ui   (then http://127.0.0.1:3000)")
    log.info("psql: %s   |   stop the database: keap-pipeline db down", database_url)
    failed = sorted({r.entity for r in (*first.values(), *second.values()) if r.metadata is None})
    if failed:
        log.info("\nnot synced in every run: %s (see the lines above)", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
