"""`make demo`: the main job end to end on embedded defaults, then a summary. Exits by itself.

Starts the embedded PostgreSQL and the Keap sandbox (50,000 contacts), materializes sync_schema and
keap_contacts through Dagster (stored in the same instance `make ui` opens), changes some contacts
in the sandbox and some locally (one of them on both sides: a conflict), runs the incremental sync
and prints what happened.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime

import psycopg

from keap_pipeline.db import embedded
from keap_pipeline.db.dead_letters import dead_letter_summary
from keap_pipeline.keap import ApiKeyAuth, KeapClient
from keap_pipeline.local_stack import SANDBOX_API_KEY, ensure_dagster_home
from keap_pipeline.sandbox import RateLimits, SandboxConfig, running_sandbox

log = logging.getLogger("keap_pipeline.demo")


def _materialize(base_url: str, database_url: str, *, mode: str, strategy: str) -> dict[str, object]:
    from dagster import DagsterInstance, materialize

    from keap_pipeline.defs.contacts import (
        keap_contacts,
        keap_contacts_cursor_fresh,
        keap_contacts_dead_letters,
    )
    from keap_pipeline.defs.keap import KeapResource
    from keap_pipeline.defs.resources import PostgresResource
    from keap_pipeline.defs.schema import sync_schema

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    result = materialize(
        # the asset checks too, so that the UI shows their results beside the materializations
        [sync_schema, keap_contacts, keap_contacts_dead_letters, keap_contacts_cursor_fresh],
        instance=DagsterInstance.get(),
        partition_key=today,
        resources={
            "postgres": PostgresResource(database_url=database_url),
            # pacing off: the sandbox has no quota to protect and the demo should be quick
            "keap": KeapResource(base_url=base_url, api_key=SANDBOX_API_KEY, pacing=False),
        },
        run_config={
            "ops": {"keap_contacts": {"config": {"mode": mode, "strategy": strategy}}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        tags={"keap_pipeline/demo": mode},
    )
    if not result.success:
        raise SystemExit("the Dagster run failed; see the log above")
    mats = result.asset_materializations_for_node("keap_contacts")
    return {k: v.value for k, v in mats[0].metadata.items()}


def _chores(database_url: str) -> list[str]:
    """Run audit_partitions_job and vacuum_analyze_job in the shared instance; their results in words."""
    from dagster import DagsterInstance

    from keap_pipeline.defs.maintenance import audit_partitions_job, vacuum_analyze_job
    from keap_pipeline.defs.resources import PostgresResource

    lines: list[str] = []
    resources = {"postgres": PostgresResource(database_url=database_url)}
    for job_def, op_name in ((audit_partitions_job, "audit_partitions_op"), (vacuum_analyze_job, "vacuum_analyze_op")):
        result = job_def.execute_in_process(resources=resources, instance=DagsterInstance.get(), raise_on_error=False)
        lines.append(f"{job_def.name}: {'succeeded' if result.success else 'FAILED'}")
        if result.success:
            lines.extend(f"  {line}" for line in result.output_for_node(op_name)["lines"])
    return lines


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
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--strategy", default="merge", choices=["keap_wins", "supabase_wins", "manual", "merge"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("httpx", "dagster", "keap_pipeline.sandbox", "keap_pipeline.db.migrate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.monotonic()

    server = embedded.start()
    database_url = server.url
    ensure_dagster_home(database_url)
    log.info("embedded PostgreSQL: %s", database_url)
    config = SandboxConfig(port=0, contacts=args.contacts, limits=RateLimits.off(), api_key=SANDBOX_API_KEY)
    with running_sandbox(config, subprocess_mode=True) as sandbox:
        log.info("Keap sandbox: %s (%s contacts)", sandbox.base_url, f"{args.contacts:,}")

        log.info("\n1. sync_schema + keap_contacts through Dagster (first run: everything up to now)")
        first = _materialize(sandbox.base_url, database_url, mode="incremental", strategy=args.strategy)
        log.info("   %s seen, %s inserted, %s unchanged, %s dead-lettered in %ss (%s records/s)",
                 first["records_seen"], first["inserted"], first["unchanged"], first["dead_lettered"],
                 first["seconds"], first["records_per_second"])

        log.info("\n2. changes: 20 contacts edited in Keap (+1 created), 10 edited in the app, 3 of them on both sides")
        with psycopg.connect(database_url) as conn:
            keap_ids = [r[0] for r in conn.execute(
                "select keap_id from public.sync_contacts order by keap_id::bigint limit 27")]
        # a tag per run, so that a second `make demo` changes the same contacts again
        tag = datetime.now(UTC).strftime("%H%M%S")
        with KeapClient(sandbox.base_url, ApiKeyAuth(SANDBOX_API_KEY), pacing=False) as client:
            _change_keap(client, keap_ids[:20], tag)
        _change_locally(database_url, keap_ids[17:27], tag)

        log.info("\n3. the incremental sync (from the stored cursor), conflict strategy %s", args.strategy)
        second = _materialize(sandbox.base_url, database_url, mode="incremental", strategy=args.strategy)
        log.info("   %s seen, %s inserted, %s updated, %s unchanged, %s conflicts %s",
                 second["records_seen"], second["inserted"], second["updated"], second["unchanged"],
                 second["conflicts"], second["conflicts_by_strategy"])

    log.info("\n4. the database chores, as their Dagster jobs (the same the schedules launch)")
    for line in _chores(database_url):
        log.info("   %s", line)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select count(*) from public.sync_contacts").fetchone()
        no_email = conn.execute("select count(*) from public.sync_contacts where email is null").fetchone()
        open_conflicts = conn.execute("select count(*) from public.sync_conflicts where resolved_at is null").fetchone()
        queued = conn.execute("select count(*) from public.sync_queue where status = 'pending'").fetchone()
        audit = conn.execute("select sync_source, count(*) from public.sync_audit_log group by 1 order by 1").fetchall()
        dead, reasons = dead_letter_summary(conn, "contacts")
    log.info("\nSummary")
    log.info("  sync_contacts rows      %s (%s without an email)", rows[0] if rows else 0, no_email[0] if no_email else 0)
    log.info("  open conflicts          %s", open_conflicts[0] if open_conflicts else 0)
    log.info("  queued for Keap         %s (app edits; ingested rows are never echoed)", queued[0] if queued else 0)
    log.info("  audit rows by source    %s", ", ".join(f"{s}: {n}" for s, n in audit))
    log.info("  dead letters (open)     %s%s", dead, "".join(f"\n      {n} × {r}" for r, n in reasons))
    log.info("  time                    %.1f s", time.monotonic() - started)
    log.info("\nOpen the Dagster UI on the same data: make ui   (then http://127.0.0.1:3000)")
    log.info("psql: %s   |   stop the database: keap-pipeline db down", database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
