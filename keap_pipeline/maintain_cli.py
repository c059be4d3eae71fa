"""`keap-pipeline maintain partitions|vacuum|queue`: the database chores of the Dagster jobs, from the command line."""

from __future__ import annotations

import argparse

from keap_pipeline.cli_args import whole
from keap_pipeline.db import maintenance


def _cmd_partitions(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import connect, resolve_database_url

    with connect(resolve_database_url(args.database_url)) as conn:
        report = maintenance.audit_partitions(
            conn, months_ahead=args.months_ahead, retention_months=args.retention_months, dry_run=args.dry_run
        )
    for line in report.lines():
        print(line)
    return 0


def _cmd_vacuum(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import connect, resolve_database_url

    with connect(resolve_database_url(args.database_url), autocommit=True) as conn:
        results = maintenance.vacuum_analyze(
            conn, tables=args.table, analyze_only=args.analyze_only, lock_timeout=args.lock_timeout
        )
    for result in results:
        print(result.line())
    skipped = sum(1 for r in results if r.skipped)
    print(f"{len(results) - skipped} table(s) processed, {skipped} skipped")
    return 0


def _cmd_queue(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import connect, resolve_database_url

    with connect(resolve_database_url(args.database_url)) as conn:
        report = maintenance.purge_queue(conn, keep_days=args.keep_days, dry_run=args.dry_run)
    for line in report.lines():
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `maintain partitions`, `maintain vacuum` and `maintain queue` to the keap-pipeline parser."""
    url_help = "PostgreSQL URL; default KEAP_PIPELINE_DATABASE_URL, else the embedded server"
    p = sub.add_parser(
        "maintain",
        help="database chores: audit partitions ahead, VACUUM (ANALYZE), queue history (the Dagster jobs' code)",
        description="The chores of audit_partitions_job, vacuum_analyze_job and queue_retention_job, with the same code and output.",
    )
    chores = p.add_subparsers(dest="chore", required=True)

    c = chores.add_parser(
        "partitions",
        help="create missing monthly audit partitions, move DEFAULT rows home, drop old months if asked",
    )
    c.add_argument("--months-ahead", type=whole(0, maintenance.MAX_MONTHS_AHEAD), default=3, metavar="N",
                   help="months after the current one that must have a partition (default 3)")
    c.add_argument("--retention-months", type=whole(1, maintenance.MAX_RETENTION_MONTHS), default=None, metavar="M",
                   help="detach and drop partitions whose month ended more than M months ago (default: keep everything)")
    c.add_argument("--dry-run", action="store_true", help="report what would be done, change nothing")
    c.add_argument("--database-url", metavar="URL", help=url_help)
    c.set_defaults(func=_cmd_partitions)

    c = chores.add_parser(
        "vacuum",
        help="VACUUM (ANALYZE) the sync tables one at a time (never FULL)",
    )
    c.add_argument("--table", action="append", choices=maintenance.SYNC_TABLES, metavar="T",
                   help=f"a sync table, repeatable (default: all of {', '.join(maintenance.SYNC_TABLES)})")
    c.add_argument("--analyze-only", action="store_true", help="ANALYZE only: refresh statistics, reclaim nothing")
    c.add_argument("--lock-timeout", default=maintenance.DEFAULT_LOCK_TIMEOUT, metavar="DURATION",
                   help=f"wait this long for a table's lock, then skip it (default {maintenance.DEFAULT_LOCK_TIMEOUT}; e.g. 500ms)")
    c.add_argument("--database-url", metavar="URL", help=url_help)
    c.set_defaults(func=_cmd_vacuum)

    c = chores.add_parser(
        "queue",
        help="purge sync_queue's history: items completed or cancelled more than N days ago (errors are kept)",
    )
    c.add_argument("--keep-days", type=whole(1, maintenance.MAX_QUEUE_KEEP_DAYS), default=maintenance.DEFAULT_QUEUE_KEEP_DAYS, metavar="N",
                   help=f"keep items finished within N days (default {maintenance.DEFAULT_QUEUE_KEEP_DAYS})")
    c.add_argument("--dry-run", action="store_true", help="count what would be purged, change nothing")
    c.add_argument("--database-url", metavar="URL", help=url_help)
    c.set_defaults(func=_cmd_queue)
