"""The `keap-pipeline sync` and `keap-pipeline dead-letters` sub-commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keap_pipeline.cli_args import HOUR_SECONDS, seconds, whole
from keap_pipeline.errors import KeapPipelineError

if TYPE_CHECKING:
    from keap_pipeline.entities import Entity
    from keap_pipeline.keap import KeapClient

log = logging.getLogger("keap_pipeline.cli")
ALL = "all"


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


# the exit statuses of one entity's sync, best first: `sync all` exits with the worst of them
EXIT_OK = 0
EXIT_STOPPED_EARLY = 3  # the daily quota ran out: what was fetched is committed, the next run resumes
EXIT_ERROR = 2  # as cli.main: a KeapPipelineError or a database error, one line
EXIT_SEVERITY = (EXIT_OK, EXIT_STOPPED_EARLY, EXIT_RUN_LOCKED, EXIT_ERROR)


def worst(statuses: Iterable[int]) -> int:
    """The worst of some exit statuses in the order of EXIT_SEVERITY (0 when there are none; others rank last)."""
    return max(
        statuses, key=lambda s: EXIT_SEVERITY.index(s) if s in EXIT_SEVERITY else len(EXIT_SEVERITY), default=EXIT_OK
    )


def run_in_lineage(entities: Sequence[Entity], run_one: Callable[[Entity], int], say: Callable[[str], None]) -> int:
    """Run each entity in the given (lineage) order; skip an entity when one it depends on did not succeed.

    A failing entity does not stop the others, except the ones that depend on it, directly or
    through a skipped one (as Dagster skips the downstream steps of a failed step in
    keap_sync_all_job): they are skipped with a line naming the parent.

    Args:
        entities: the entities, each after the ones it depends on (entities.lineage_order).
        run_one: syncs one entity and returns its exit status.
        say: prints one line.

    Returns:
        The worst exit status (worst()).
    """
    statuses: dict[str, int] = {}
    skipped: set[str] = set()
    for entity in entities:
        blocked = [d for d in entity.depends_on if d in skipped or statuses.get(d, EXIT_OK) != EXIT_OK]
        if blocked:
            skipped.add(entity.name)
            why = ", ".join(f"{d} was skipped" if d in skipped else f"{d} exited {statuses[d]}" for d in blocked)
            say(f"{entity.name}: skipped, it is loaded after {', '.join(blocked)} ({why}); the next sync includes it")
            continue
        statuses[entity.name] = run_one(entity)
    return worst(statuses.values())


def _cmd_sync(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import resolve_database_url
    from keap_pipeline.entities import ENTITIES, CursorKind, lineage_order
    from keap_pipeline.keap import ApiKeyAuth, KeapClient

    base_url = args.base_url or os.environ.get("KEAP_BASE_URL")
    api_key = os.environ.get("KEAP_API_KEY")
    if not base_url or not api_key:
        raise CommandLineError("set KEAP_BASE_URL (or --base-url) and KEAP_API_KEY")
    every = args.entity == ALL
    entities = lineage_order() if every else (ENTITIES[args.entity],)
    if not every and entities[0].cursor is not CursorKind.TIME and (args.since or args.until):
        raise CommandLineError(
            f"{args.entity} has no time filter in Keap: every sync is a full pass; drop --since/--until"
        )
    url = resolve_database_url(args.database_url)
    run_id = f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    with KeapClient(base_url, ApiKeyAuth(api_key), pacing=not args.no_pacing) as client:
        status = run_in_lineage(
            entities, lambda entity: _sync_one(client, url, entity, args, run_id, every=every), print
        )
    if every:
        print(f"sync all: {len(entities)} entities in lineage order, exit status {status}")
    return status


def _sync_one(
    client: KeapClient, url: str, entity: Entity, args: argparse.Namespace, run_id: str, *, every: bool
) -> int:
    """Sync one entity as the flags say; print its summary line; return its exit status."""
    from keap_pipeline.cli import database_error_line, database_urls
    from keap_pipeline.db.cursors import INCREMENTAL, window_scope
    from keap_pipeline.db.locks import RunLocked, RunLockLost
    from keap_pipeline.entities import CursorKind
    from keap_pipeline.pipeline.sync import sync_entity

    timed = entity.cursor is CursorKind.TIME
    since, until = (args.since, args.until) if timed else (None, None)
    scope = window_scope(since, until) if since and until else INCREMENTAL
    try:
        report = sync_entity(
            client,
            url,
            entity,
            since=since,
            until=until,
            scope=scope,
            strategy=args.strategy,
            merge_rule=args.merge_rule,
            page_size=args.page_size,
            pages_per_batch=args.pages_per_batch,
            max_pages_per_batch=args.max_pages_per_batch,
            **({} if args.max_changes is None else {"max_changes": args.max_changes}),
            loaders=args.loaders,
            run_id=run_id,
            progress=lambda r: print(f"  {r.progress_line()}", flush=True),
            lock_wait_seconds=args.wait,
            lock_timeout_seconds=args.lock_timeout,
            stall_seconds=args.stall_timeout,
            on_lock_wait=lambda holder: print(
                f"  another {entity.name} run is in progress: {holder}; waiting up to {args.wait:g} s", flush=True
            ),
        )
    except RunLockLost as err:
        return _failed(entity, str(err), EXIT_RUN_LOCKED, "stopped, another run took its lock", every=every)
    except RunLocked as err:
        return _failed(entity, str(err), EXIT_RUN_LOCKED, "not synced, another run holds its lock", every=every)
    except KeapPipelineError as err:
        return _failed(entity, str(err), EXIT_ERROR, "failed", every=every)
    except Exception as err:
        # psycopg is imported lazily; a database error is one line, as cli.main prints it. Any other
        # error stops only this entity under `sync all` (its line says what; -v logs the traceback)
        database = type(err).__module__.split(".")[0] == "psycopg"
        if not database and not every:
            raise
        log.debug("%s: sync failed", entity.name, exc_info=True)
        kind = "database error" if database else type(err).__name__
        return _failed(entity, f"{kind}: {database_error_line(err, database_urls(args))}", EXIT_ERROR, "failed", every=every)
    note = ""
    if not timed:
        note = f"; a full pass ({entity.cursor.value} cursor: no time filter in Keap"
        note += ", --since/--until apply to the others)" if args.since or args.until else ")"
    print(report.summary() + note)
    if report.dead_lettered:
        # a record that cannot load never stops the run: it waits as a dead letter, the rest loads
        print(
            f"{report.dead_lettered} record(s) could not be loaded and are kept as dead letters: "
            f"`keap-pipeline dead-letters list --entity {entity.name}`"
        )
    return EXIT_STOPPED_EARLY if report.stopped_early else EXIT_OK


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
            url, args.entity, ids=args.ids or None, strategy=args.strategy, merge_rule=args.merge_rule,
            lock_wait_seconds=args.wait,
        )
    except RunLocked as err:
        print(f"keap-pipeline dead-letters: {err}", file=sys.stderr)
        return EXIT_RUN_LOCKED
    print(f"replayed {len(report.replayed)}: {report.replayed}")
    for ident, reason in report.still_failing:
        print(f"still failing {ident}: {reason}")
    # an --id that named no open letter of the entity: said, not passed over as "replayed 0"
    if report.not_open:
        print(
            f"keap-pipeline dead-letters: no open {args.entity} dead letter with id "
            f"{', '.join(map(str, report.not_open))} "
            f"(`keap-pipeline dead-letters list --entity {args.entity} --status all` shows them all)",
            file=sys.stderr,
        )
    return 1 if report.still_failing or report.not_open else 0


def _failed(entity: Entity, error: str, status: int, what: str, *, every: bool) -> int:
    # the error on stderr as a single sync always printed it; under `sync all` also the entity's line
    print(f"keap-pipeline sync {entity.name}: {error}", file=sys.stderr)
    if every:
        print(f"{entity.name}: {what} (exit {status}): {error}")
    return status


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `sync` and `dead-letters` to the keap-pipeline parser."""
    from keap_pipeline.entities import ENTITIES

    p = sub.add_parser(
        "sync",
        help="sync an entity from Keap, or all of them in lineage order (incremental from the cursor, or a window)",
        description="Sync Keap into PostgreSQL: incremental from the stored cursor, or the window --since/--until.",
        epilog="Environment: KEAP_API_KEY (required) is the Keap API key, read from the environment only, never "
        "a flag (flags show in the process list); KEAP_BASE_URL is the API root ending in /crm/rest/v2 "
        "(or --base-url); KEAP_PIPELINE_DATABASE_URL is the database (or --database-url, else the embedded "
        "server). The local sandbox (`keap-pipeline sandbox`) accepts the key it prints at start.",
    )
    p.add_argument(
        "entity", choices=[*ENTITIES, ALL],
        help=f"{ALL}: every entity in lineage order; a child of an entity that did not complete is skipped, "
        "the exit status is the worst",
    )
    p.add_argument(
        "--since", type=_instant,
        help="window start, ISO-8601 (default: the stored cursor); entities without a time filter do a full pass",
    )
    p.add_argument("--until", type=_instant, help="window end, ISO-8601 (default: now)")
    _add_strategy(p)
    p.add_argument("--pages-per-batch", type=whole(1, 50), default=1, help="fewest pages per transaction (default 1)")
    p.add_argument(
        "--max-pages-per-batch", type=whole(1), default=10,
        help="most pages per transaction, reached while pages change little (default 10)",
    )
    p.add_argument(
        "--max-changes", type=whole(1), metavar="N",
        help="most changes one transaction streams to realtime subscribers (rows of published tables, "
        "sync_status included); a batch that would write more commits in parts (default: 500 while a logical "
        "replication slot of the database exists, such as Supabase Realtime's or a subscriber's, 4000 while none "
        "does; pipeline.batching)",
    )
    p.add_argument(
        "--loaders", type=int, default=2, choices=range(1, 9), metavar="1..8",
        help="batches loading at once, each on its own database connection; they commit in page order (default 2)",
    )
    p.add_argument("--page-size", type=int, default=1000, choices=range(1, 1001), metavar="1..1000",
                   help="records per Keap request (default 1000, Keap's maximum)")
    p.add_argument("--base-url", help="Keap API root (default KEAP_BASE_URL)")
    p.add_argument("--no-pacing", action="store_true",
                   help="do not pace requests to Keap's published limits (sandbox benchmarks only; default: paced)")
    _add_wait(p)
    p.add_argument(
        "--lock-timeout", type=seconds(HOUR_SECONDS), default=30.0, metavar="SECONDS",
        help="a loader's longest wait for one row lock before its batch is retried (default 30; 0 = no bound)",
    )
    p.add_argument(
        "--stall-timeout", type=seconds(), default=300.0, metavar="SECONDS",
        help="stop the run when no batch commits for this long, naming what it waits on (default 300; 0 = never)",
    )
    p.add_argument("--database-url", metavar="URL",
                   help="PostgreSQL URL; default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("dead-letters", help="list or replay records that could not be loaded")
    p.add_argument(
        "action", choices=["list", "replay"],
        help="list: the dead letters with their reasons; replay: load them again with today's rules "
        "(those that still fail stay open, with the new reason)",
    )
    # every entity of the table has a loader (normalizer + upsert), so every one can be replayed
    p.add_argument("--entity", choices=list(ENTITIES), default="contacts",
                   help=f"whose dead letters: {', '.join(ENTITIES)} (default contacts)")
    p.add_argument("--status", choices=["open", "replayed", "discarded", "all"], default="open",
                   help="list only: which letters (default open)")
    p.add_argument("--limit", type=whole(1), default=100, help="list only: at most this many, newest first (default 100)")
    p.add_argument("--id", dest="ids", type=whole(1), action="append", metavar="ID",
                   help="replay only this id, repeatable (default: every open letter of the entity)")
    _add_strategy(p)
    _add_wait(p)
    p.add_argument("--database-url", metavar="URL",
                   help="PostgreSQL URL; default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_dead_letters)


def _add_strategy(p: argparse.ArgumentParser) -> None:
    """--strategy and --merge-rule, as `sync` and `dead-letters replay` share them."""
    from keap_pipeline.db.load import CONFLICT_STRATEGIES, MERGE_RULES

    p.add_argument(
        "--strategy", choices=CONFLICT_STRATEGIES, default="keap_wins",
        help="for a record changed in Keap and locally since the last sync: keap_wins, supabase_wins, manual "
        "(park it as an open conflict) or merge (field by field, see --merge-rule) (default keap_wins)",
    )
    p.add_argument(
        "--merge-rule", choices=MERGE_RULES, default="manual",
        help="with --strategy merge, for a field changed on both sides: keap_wins, supabase_wins, or manual "
        "(park the record as an open conflict) (default manual)",
    )


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait", type=seconds(), default=60.0, metavar="SECONDS",
        help="when another run of the entity is in progress (a sync, a replay, a Dagster run), wait this long "
        f"for it, then exit with status {EXIT_RUN_LOCKED} naming it (default 60; 0 = do not wait)",
    )
