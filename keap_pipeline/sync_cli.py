"""The `keap-pipeline sync` and `keap-pipeline dead-letters` sub-commands."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from keap_pipeline.errors import KeapPipelineError


class CommandLineError(KeapPipelineError):
    """A sub-command was called with settings it cannot work with."""


# `sync` / `dead-letters replay` found another run of the entity in progress (EX_TEMPFAIL: try again later)
EXIT_RUN_LOCKED = 75


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cmd_sync(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import resolve_database_url
    from keap_pipeline.db.cursors import INCREMENTAL, window_scope
    from keap_pipeline.db.locks import RunLocked
    from keap_pipeline.entities import ENTITIES
    from keap_pipeline.keap import ApiKeyAuth, KeapClient
    from keap_pipeline.pipeline.sync import sync_entity

    base_url = args.base_url or os.environ.get("KEAP_BASE_URL")
    api_key = os.environ.get("KEAP_API_KEY")
    if not base_url or not api_key:
        raise CommandLineError("set KEAP_BASE_URL (or --base-url) and KEAP_API_KEY")
    entity = ENTITIES[args.entity]
    scope = INCREMENTAL
    if args.since and args.until:
        scope = window_scope(args.since, args.until)
    url = resolve_database_url(args.database_url)
    with KeapClient(base_url, ApiKeyAuth(api_key), pacing=not args.no_pacing) as client:
        try:
            report = sync_entity(
                client,
                url,
                entity,
                since=args.since,
                until=args.until,
                scope=scope,
                strategy=args.strategy,
                merge_rule=args.merge_rule,
                page_size=args.page_size,
                pages_per_batch=args.pages_per_batch,
                max_pages_per_batch=args.max_pages_per_batch,
                loaders=args.loaders,
                run_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}",
                progress=lambda r: print(
                    f"  {r.pages} pages, {r.records_seen} records, {r.records_per_second:,.0f}/s", flush=True
                ),
                lock_wait_seconds=args.wait,
                lock_timeout_seconds=args.lock_timeout,
                stall_seconds=args.stall_timeout,
                on_lock_wait=lambda holder: print(
                    f"  another {entity.name} run is in progress: {holder}; waiting up to {args.wait:g} s", flush=True
                ),
            )
        except RunLocked as err:
            print(f"keap-pipeline sync: {err}", file=sys.stderr)
            return EXIT_RUN_LOCKED
    print(report.summary())
    if report.dead_lettered:
        # a record that cannot load never stops the run: it waits as a dead letter, the rest loads
        print(
            f"{report.dead_lettered} record(s) could not be loaded and are kept as dead letters: "
            f"`keap-pipeline dead-letters list --entity {entity.name}`"
        )
    return 3 if report.stopped_early else 0


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import connect, resolve_database_url
    from keap_pipeline.db.dead_letters import list_dead_letters
    from keap_pipeline.pipeline.replay import replay_dead_letters

    url = resolve_database_url(args.database_url)
    if args.action == "list":
        with connect(url) as conn:
            letters = list_dead_letters(
                conn, args.entity, status=None if args.status == "all" else args.status, limit=args.limit
            )
        print(f"{'id':>6}  {'entity':10} {'keap_id':>10}  {'status':9} {'tries':>5}  {'last seen':25}  reason")
        for d in letters:
            print(
                f"{d.id:>6}  {d.entity:10} {d.keap_id or '-':>10}  {d.status:9} {d.attempts:>5}  "
                f"{d.last_seen_at.isoformat(timespec='seconds'):25}  {d.reason}"
            )
        print(f"{len(letters)} dead letter(s)")
        return 0
    from keap_pipeline.db.locks import RunLocked

    try:
        report = replay_dead_letters(
            url, args.entity, ids=args.ids or None, strategy=args.strategy, lock_wait_seconds=args.wait
        )
    except RunLocked as err:
        print(f"keap-pipeline dead-letters: {err}", file=sys.stderr)
        return EXIT_RUN_LOCKED
    print(f"replayed {len(report.replayed)}: {report.replayed}")
    for ident, reason in report.still_failing:
        print(f"still failing {ident}: {reason}")
    return 1 if report.still_failing else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `sync` and `dead-letters` to the keap-pipeline parser."""
    from keap_pipeline.db.load import CONFLICT_STRATEGIES, MERGE_RULES
    from keap_pipeline.entities import ENTITIES

    syncable = list(ENTITIES)
    p = sub.add_parser("sync", help="sync an entity from Keap (incremental from the cursor, or a window)")
    p.add_argument("entity", choices=syncable)
    p.add_argument("--since", type=_instant, help="window start, ISO-8601 (default: the stored cursor)")
    p.add_argument("--until", type=_instant, help="window end, ISO-8601 (default: now)")
    p.add_argument("--strategy", choices=CONFLICT_STRATEGIES, default="keap_wins")
    p.add_argument("--merge-rule", choices=MERGE_RULES, default="manual")
    p.add_argument("--pages-per-batch", type=int, default=1, help="fewest pages per transaction")
    p.add_argument(
        "--max-pages-per-batch", type=int, default=10,
        help="most pages per transaction, reached while pages change little (default 10)",
    )
    p.add_argument(
        "--loaders", type=int, default=2, choices=range(1, 9), metavar="1..8",
        help="batches loading at once, each on its own database connection; they commit in page order (default 2)",
    )
    p.add_argument("--page-size", type=int, default=1000, choices=range(1, 1001), metavar="1..1000",
                   help="records per Keap request (default 1000, Keap's maximum)")
    p.add_argument("--base-url", help="Keap API root (default KEAP_BASE_URL)")
    p.add_argument("--no-pacing", action="store_true", help="do not pace requests (sandbox benchmarks only)")
    _add_wait(p)
    p.add_argument(
        "--lock-timeout", type=float, default=30.0, metavar="SECONDS",
        help="a loader's longest wait for one row lock before its batch is retried (default 30; 0 = no bound)",
    )
    p.add_argument(
        "--stall-timeout", type=float, default=300.0, metavar="SECONDS",
        help="stop the run when no batch commits for this long, naming what it waits on (default 300; 0 = never)",
    )
    p.add_argument("--database-url", metavar="URL", help="default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("dead-letters", help="list or replay records that could not be loaded")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--entity", choices=list(ENTITIES), default="contacts")
    p.add_argument("--status", choices=["open", "replayed", "discarded", "all"], default="open")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--id", dest="ids", type=int, action="append", help="replay only this id (repeatable)")
    p.add_argument("--strategy", choices=CONFLICT_STRATEGIES, default="keap_wins")
    _add_wait(p)
    p.add_argument("--database-url", metavar="URL", help="default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_dead_letters)


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS",
        help="when another run of the entity is in progress (a sync, a replay, a Dagster run), wait this long "
        f"for it, then exit with status {EXIT_RUN_LOCKED} naming it (default 60; 0 = do not wait)",
    )
