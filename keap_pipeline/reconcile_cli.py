"""`keap-pipeline reconcile ENTITY|all`: deletions in Keap reach the database (id scans with a safety stop)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keap_pipeline.cli_args import HOUR_SECONDS, seconds, share, share_below_one, whole
from keap_pipeline.sync_cli import (
    ALL,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RUN_LOCKED,
    EXIT_STOPPED_EARLY,
    CommandLineError,
)

if TYPE_CHECKING:
    from keap_pipeline.entities import Entity
    from keap_pipeline.keap import KeapClient
    from keap_pipeline.pipeline.reconcile import ReconcileReport, ReconcileSettings

# a pass the safety limits stopped: nothing deleted, a person must look (and may --confirm it)
EXIT_SAFETY_STOP = 4
# best first; `reconcile all` exits with the worst
_SEVERITY = (EXIT_OK, EXIT_STOPPED_EARLY, EXIT_SAFETY_STOP, EXIT_RUN_LOCKED, EXIT_ERROR)


def _settings(args: argparse.Namespace) -> ReconcileSettings:
    from keap_pipeline.pipeline.reconcile import ReconcileSettings

    return ReconcileSettings(
        max_share=args.max_share,
        max_count=args.max_count,
        page_size=args.page_size,
        quota_reserve_share=args.quota_reserve,
        clock_skew_seconds=args.clock_skew,
        lock_wait_seconds=args.wait,
        lock_timeout_seconds=args.lock_timeout,
        max_changes=args.max_changes,
    )


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import resolve_database_url
    from keap_pipeline.entities import ENTITIES, lineage_order

    url = resolve_database_url(args.database_url)
    if args.list:
        return _list(url, None if args.entity == ALL else args.entity)
    if args.confirm:
        if args.entity == ALL:
            raise CommandLineError("--confirm applies one stopped pass: name its entity, not all")
        return _confirm(url, ENTITIES[args.entity], args)
    from keap_pipeline.keap import ApiKeyAuth, KeapClient

    base_url = args.base_url or os.environ.get("KEAP_BASE_URL")
    api_key = os.environ.get("KEAP_API_KEY")
    if not base_url or not api_key:
        raise CommandLineError("set KEAP_BASE_URL (or --base-url) and KEAP_API_KEY")
    entities = lineage_order() if args.entity == ALL else (ENTITIES[args.entity],)
    settings = _settings(args)
    run_id = f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    with KeapClient(base_url, ApiKeyAuth(api_key), pacing=not args.no_pacing) as client:
        # each entity on its own: a deletion pass of one does not depend on another's
        statuses = [_reconcile_one(client, url, entity, settings, run_id) for entity in entities]
    status = max(statuses, key=_SEVERITY.index)
    if args.entity == ALL:
        print(f"reconcile all: {len(entities)} entities, exit status {status}")
    return status


def _reconcile_one(client: KeapClient, url: str, entity: Entity, settings: ReconcileSettings, run_id: str) -> int:
    from keap_pipeline.cli import database_error_line
    from keap_pipeline.db import reconcile as db
    from keap_pipeline.db.locks import RunLocked
    from keap_pipeline.errors import KeapPipelineError
    from keap_pipeline.pipeline.reconcile import reconcile_entity

    def progress(report: ReconcileReport) -> None:
        if report.pages % 100 == 0:
            print(f"  {entity.name}: {report.pages} pages, {report.listed} ids", flush=True)

    try:
        report = reconcile_entity(
            client, url, entity, settings, run_id=run_id, progress=progress,
            on_lock_wait=lambda who: print(f"  another {entity.name} pass is in progress: {who}; waiting", flush=True),
        )
    except RunLocked as err:
        print(f"keap-pipeline reconcile {entity.name}: {err}", file=sys.stderr)
        return EXIT_RUN_LOCKED
    except KeapPipelineError as err:
        print(f"keap-pipeline reconcile {entity.name}: {err}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:
        if type(err).__module__.split(".")[0] != "psycopg":
            raise
        print(f"keap-pipeline reconcile {entity.name}: database error: {database_error_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    print(report.summary())
    if report.status == db.STOPPED:
        return EXIT_SAFETY_STOP
    if report.status in (db.INTERRUPTED, db.SKIPPED):
        return EXIT_STOPPED_EARLY
    return EXIT_OK


def _confirm(url: str, entity: Entity, args: argparse.Namespace) -> int:
    from keap_pipeline.pipeline.reconcile import confirm_pass

    try:
        deleted = confirm_pass(
            url, entity, args.confirm, lock_timeout_seconds=args.lock_timeout, lock_wait_seconds=args.wait,
            max_changes=args.max_changes,
        )
    except ValueError:
        raise CommandLineError(f"--confirm takes a pass id (a uuid), got {args.confirm!r}") from None
    print(f"{entity.name}: pass {args.confirm} confirmed, {deleted} soft-deleted as Keap's deletions")
    return EXIT_OK


def _list(url: str, entity: str | None) -> int:
    from keap_pipeline.db.connect import connect
    from keap_pipeline.db.reconcile import pending_count, recent_passes

    with connect(url) as conn:
        passes = recent_passes(conn, entity)
        print(f"{'pass':36}  {'entity':13} {'status':11} {'started':25} {'listed':>8} {'missing':>8} {'deleted':>8}  reason")
        for p in passes:
            missing = "-" if p.missing is None else str(p.missing)
            deleted = "-" if p.deleted is None else str(p.deleted)
            if p.status == "stopped":
                deleted = f"0/{pending_count(conn, p.id)}"
            print(
                f"{p.id!s:36}  {p.entity:13} {p.status:11} {p.started_at.isoformat(timespec='seconds'):25} "
                f"{p.listed:>8} {missing:>8} {deleted:>8}  {p.reason or ''}"
            )
    print(f"{len(passes)} pass(es)")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `reconcile` to the keap-pipeline parser."""
    from keap_pipeline.entities import ENTITIES

    p = sub.add_parser(
        "reconcile",
        help="find what was deleted in Keap (an id scan) and soft-delete it here, with a safety stop",
        description="Page every id Keap has for the entity and soft-delete the rows it no longer lists "
        "(audited as Keap's DELETE, never queued back to Keap); rows Keap lists again are restored. "
        f"Exit status: 0 done, {EXIT_STOPPED_EARLY} interrupted or skipped (nothing deleted; try later), "
        f"{EXIT_SAFETY_STOP} safety stop (nothing deleted; review and --confirm), {EXIT_RUN_LOCKED} another "
        f"pass in progress, {EXIT_ERROR} an error.",
    )
    p.add_argument("entity", choices=[*ENTITIES, ALL], help=f"{ALL}: every entity, one pass each")
    p.add_argument(
        "--max-share", type=share, default=0.02, metavar="SHARE",
        help="stop before deleting more than this share of the entity's live rows (default 0.02 = 2%%)",
    )
    p.add_argument(
        "--max-count", type=whole(0), default=10_000, metavar="N",
        help="stop before deleting more than this many rows (default 10000)",
    )
    p.add_argument(
        "--max-changes", type=whole(1), default=500, metavar="N",
        help="the most changes one transaction of soft deletes streams to realtime subscribers (a row and its "
        "sync_status row each; default 500, as a sync batch's)",
    )
    p.add_argument(
        "--confirm", metavar="PASS_ID",
        help="apply the deletions a stopped pass recorded (after reviewing keap_pipeline.reconcile_pending_deletions); "
        "no request to Keap",
    )
    p.add_argument("--list", action="store_true", help="show the latest passes and exit")
    p.add_argument(
        "--quota-reserve", type=share_below_one, default=0.10, metavar="SHARE",
        help="share of the day's quota kept for the incremental syncs: a pass the rest would not cover is skipped "
        "(default 0.10)",
    )
    p.add_argument(
        "--clock-skew", type=seconds(), default=600.0, metavar="SECONDS",
        help="rows Keap updated up to this long before the pass started are kept too (default 600)",
    )
    p.add_argument("--page-size", type=int, default=1000, choices=range(1, 1001), metavar="1..1000",
                   help="ids per Keap request (default 1000, Keap's maximum: the cheapest pass)")
    p.add_argument("--base-url", help="Keap API root (default KEAP_BASE_URL)")
    p.add_argument("--no-pacing", action="store_true", help="do not pace requests (sandbox benchmarks only)")
    p.add_argument(
        "--wait", type=seconds(), default=60.0, metavar="SECONDS",
        help=f"when another pass of the entity is in progress, wait this long, then exit {EXIT_RUN_LOCKED} (default 60)",
    )
    p.add_argument(
        "--lock-timeout", type=seconds(HOUR_SECONDS), default=30.0, metavar="SECONDS",
        help="the longest wait for one row lock while applying (default 30; 0 = no bound)",
    )
    p.add_argument("--database-url", metavar="URL", help="default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_reconcile)
