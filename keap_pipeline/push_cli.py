"""The `keap-pipeline push` sub-command: send the outbound queue's app changes to Keap."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from keap_pipeline.cli_args import positive_seconds, positive_share, whole
from keap_pipeline.errors import KeapPipelineError

# the exit statuses of a push: as `sync` (3: the daily quota ran out, the rest waits in the queue)
EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_STOPPED_EARLY = 3


class PushCommandError(KeapPipelineError):
    """`keap-pipeline push` was called with settings it cannot work with."""


def _cmd_push(args: argparse.Namespace) -> int:
    from keap_pipeline.db.connect import connect, resolve_database_url
    from keap_pipeline.db.outbound import queue_counts
    from keap_pipeline.keap import ApiKeyAuth, KeapClient, Pacer, RetryPolicy
    from keap_pipeline.outbound.push import PushSettings, push
    from keap_pipeline.outbound.share import SharedPacer

    base_url = args.base_url or os.environ.get("KEAP_BASE_URL")
    api_key = os.environ.get("KEAP_API_KEY")
    if not base_url or not api_key:
        raise PushCommandError("set KEAP_BASE_URL (or --base-url) and KEAP_API_KEY")
    if args.quota_share is not None and args.no_pacing:
        raise PushCommandError("--quota-share paces the push: it cannot go with --no-pacing")
    url = resolve_database_url(args.database_url)
    settings = PushSettings(
        strategy=args.strategy,
        merge_rule=args.merge_rule,
        batch_size=args.batch_size,
        limit=args.limit,
        max_seconds=args.max_seconds,
        run_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}",
    )
    auth = ApiKeyAuth(api_key)
    pacer = None
    if args.quota_share is not None:
        pacer = SharedPacer(Pacer.shared(auth.fingerprint, auth.default_limits()), args.quota_share)
    # the queue retries with backoff (next attempt, max_attempts): one request retries only briefly
    retry = RetryPolicy(max_retries=2, max_wait=30.0)

    def client() -> KeapClient:
        if args.no_pacing:
            return KeapClient(base_url, auth, pacing=False, retry=retry)
        return KeapClient(base_url, auth, pacer=pacer, retry=retry)

    senders = [client() for _ in range(args.senders)]
    # Unpaced, the reads get a client of their own, so that a batch is sent while the next one is read and
    # marked. Paced, Keap's limits bound the push (one step after the other used 100% of the allowed rate:
    # docs/benchmarks.md, "Outbound push"), and a reader beside the senders only made their answers arrive out
    # of order for the pacer: the reads take turns with the sends on the first sender.
    reader = client() if args.no_pacing else senders[0]
    clients = [reader, *senders] if args.no_pacing else senders
    try:
        report = push(
            reader, url, entities=args.entity or None, retry_failed=args.retry_failed, settings=settings,
            senders=senders,
            progress=lambda r: print(f"  {r.claimed} claimed, {r.sent} sent, {r.per_second:,.0f}/s", flush=True),
        )
    finally:
        for one in clients:
            one.close()
    if args.retry_failed:
        print(f"{report.retried_failed} failed item(s) made pending again")
    print(report.summary())
    with connect(url) as conn:
        counts = queue_counts(conn)
    for table in counts:
        if table.failed or table.unsupported or table.held or table.pending:
            print(
                f"  {table.entity_type}: {table.pending} pending ({table.due} due), {table.in_flight} in flight, "
                f"{table.held} held, {table.failed} failed, {table.unsupported} unsupported"
            )
            for reason, n in table.reasons[:5]:
                print(f"    {n} x {reason}")
    if report.stopped_early:
        return EXIT_STOPPED_EARLY
    return EXIT_FAILED_ITEMS if report.failed else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `push` to the keap-pipeline parser."""
    from keap_pipeline.db.load import CONFLICT_STRATEGIES, MERGE_RULES
    from keap_pipeline.outbound.specs import SPECS

    p = sub.add_parser(
        "push",
        help="send the outbound queue's app changes (contacts, tags) to Keap; other entities' items are kept "
        "as unsupported",
    )
    p.add_argument("--limit", type=whole(1), default=None, metavar="N", help="claim at most N items in this run")
    p.add_argument(
        "--entity", action="append", choices=list(SPECS), help="push only this entity (repeatable; default all)"
    )
    p.add_argument(
        "--retry-failed", action="store_true",
        help="first make failed items pending again (after fixing what Keap refused), then push",
    )
    p.add_argument("--strategy", choices=CONFLICT_STRATEGIES, default="keap_wins",
                   help="a record changed in Keap since the app's edit: as the ingestion resolves it (default keap_wins)")
    p.add_argument("--merge-rule", choices=MERGE_RULES, default="manual",
                   help="with --strategy merge, for a field changed on both sides: keap_wins, supabase_wins, or manual "
                   "(park the record as an open conflict) (default manual)")
    p.add_argument("--batch-size", type=whole(1, 1000), default=100, metavar="N", help="items per claim (default 100)")
    p.add_argument("--max-seconds", type=positive_seconds(), default=None, metavar="S", help="stop claiming after S seconds")
    p.add_argument(
        "--quota-share", type=positive_share, default=None, metavar="F",
        help="send at most this share (0-1] of the key's request limits, leaving the rest to syncs",
    )
    p.add_argument("--senders", type=int, default=1, choices=range(1, 9), metavar="1..8",
                   help="requests in flight at once, one client each (default 1)")
    p.add_argument("--base-url", help="Keap API root (default KEAP_BASE_URL)")
    p.add_argument("--no-pacing", action="store_true", help="do not pace requests (sandbox benchmarks only)")
    p.add_argument("--database-url", metavar="URL", help="default KEAP_PIPELINE_DATABASE_URL, else the embedded server")
    p.set_defaults(func=_cmd_push)
