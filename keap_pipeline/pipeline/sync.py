"""Sync one entity over one time window: page Keap, load batch by batch, stop cleanly on a spent quota."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from typing import Any

import psycopg

from keap_pipeline.db.connect import connect
from keap_pipeline.db.cursors import INCREMENTAL, advance_cursor, get_cursor
from keap_pipeline.db.health import record_sync_success, server_time
from keap_pipeline.db.links import dependents, resolve_links
from keap_pipeline.db.locks import run_lock
from keap_pipeline.db.publication import decoding, stream_cost
from keap_pipeline.db.raw_keys import find_known
from keap_pipeline.entities import CursorKind, Entity
from keap_pipeline.keap import KeapClient, KeapQuotaExhausted
from keap_pipeline.keap.paging import Page
from keap_pipeline.normalize.result import NormalizeResult
from keap_pipeline.pipeline.batch import BatchOutcome, load_batch
from keap_pipeline.pipeline.batching import (
    DECODING_RECHECK_SECONDS,
    DEFAULT_MAX_CHANGES,
    UNWATCHED_MAX_CHANGES,
    BatchSizer,
)
from keap_pipeline.pipeline.pages import NormalizedPage, batch_keys, combine, normalize_page, split
from keap_pipeline.pipeline.parallel import LoaderPool, Turn
from keap_pipeline.pipeline.prefetch import prefetch
from keap_pipeline.pipeline.raw_keys import Find, PageFinder, is_split, read_page
from keap_pipeline.pipeline.report import SyncReport
from keap_pipeline.pipeline.retries import DEFAULT_LOCK_TIMEOUT_SECONDS, with_retries

log = logging.getLogger(__name__)

Progress = Callable[[SyncReport], None]
# what a loader gets: the raw records, their normalized form, how many pages (a share of one when a
# page was split), whether to diff first
Batch = tuple[Sequence[Any], NormalizeResult, float, bool]
# how long a run waits for another run of the same entity to finish, by default
DEFAULT_LOCK_WAIT_SECONDS = 60.0
# a run whose batches in flight commit nothing for this long is stopped (pipeline.parallel)
DEFAULT_STALL_SECONDS = 300.0


def link_dependents(conn: psycopg.Connection, entity: Entity, lock_timeout_seconds: float) -> int:
    """Link rows loaded before their parents: this entity's, and its children's waiting for its records.

    Runs after a sync or a replay of `entity`; each entity's links in one transaction, retried like a
    batch when it meets a concurrent writer.

    Returns:
        How many links were filled.
    """
    linked = 0
    for child in dependents(entity):
        linked += with_retries(
            child, partial(resolve_links, conn, child, lock_timeout_seconds=lock_timeout_seconds),
            lock_timeout_seconds=lock_timeout_seconds, what="linking", logger=log,
        )
    return linked


def run_holder(entity: Entity, run_id: str | None) -> str:
    """How this run shows itself in pg_stat_activity to a run that waits for it."""
    return f"keap-pipeline {entity.name} {run_id or 'run'}"


def sync_entity(
    client: KeapClient,
    database_url: str,
    entity: Entity,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    scope: str = INCREMENTAL,
    strategy: str = "keap_wins",
    merge_rule: str = "manual",
    page_size: int = 1000,
    pages_per_batch: int = 1,
    max_pages_per_batch: int = 10,
    max_changes: int | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    loaders: int = 2,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    on_lock_wait: Callable[[str], None] | None = None,
) -> SyncReport:
    """Page `entity` from Keap and load it, one transaction per batch of pages.

    Where to start depends on the entity's cursor kind (entities.CursorKind):
    - TIME (tags, contacts, orders): ordered by update time, from the stored cursor of `scope`
      when it is later than `since` (a killed run resumes where its last committed batch ended;
      the bound is inclusive, and re-reading records already loaded writes nothing), else `since`
      (None: from the beginning). A window (`until` given, scope not INCREMENTAL) that was loaded
      to its end has its cursor at `until` and is read again in full when synced again.
    - ID (subscriptions): a full pass ordered by id; a killed pass resumes after the last id it
      committed, a completed one starts the next from the first id. No window.
    - FULL (products): a full pass from the first page every run. No window.
    Unchanged records cost no writes in any kind (the key/hash diff). Before paging, the entity's
    before_sync hook runs (tags: their categories); after it, the links of rows that waited for
    this entity's records (or its own) are filled (link_dependents).

    Args:
        client: a Keap client.
        database_url: the sync database.
        entity: the entity.
        since: window start (inclusive; TIME entities only); None = from the cursor or the beginning.
        until: window end (exclusive); None = open.
        scope: the cursor scope (INCREMENTAL, or cursors.window_scope(...) for a backfill).
        strategy: conflict strategy (keap_wins, supabase_wins, manual, merge).
        merge_rule: for merge: keap_wins, supabase_wins or manual.
        page_size: records per request (<= 1000).
        pages_per_batch: the fewest pages per transaction (1000 changed rows per transaction
            keeps realtime subscribers' latency low; see docs/benchmarks.md).
        max_pages_per_batch: the most pages per transaction, reached while pages change little
            (pipeline.batching.BatchSizer).
        max_changes: the most changes one transaction streams to realtime subscribers (rows of
            published tables written, sync_status rows included; db.publication): pages per
            batch follow it, and a batch that would write more commits in parts. None (the
            default): DEFAULT_MAX_CHANGES while anything decodes the database's WAL (a logical
            replication slot exists, looked at again every few seconds), UNWATCHED_MAX_CHANGES
            while nothing does.
        run_id: kept with the cursor and dead letters.
        progress: called after every committed batch with the running report.
        loaders: how many batches load at once, each on its own connection (pipeline.parallel);
            they still commit in page order. 1 loads one batch at a time.
        lock_wait_seconds: how long to wait for another run of this entity (a sync or a
            replay: they hold the entity's run lock, db.locks) before giving up with RunLocked.
        lock_timeout_seconds: a loader's longest wait for one row lock before its batch is
            retried (0 = no bound).
        stall_seconds: stop the run when batches in flight commit nothing for this long
            (StalledRun; 0 = never).
        on_lock_wait: told (with who holds it) when the run has to wait for another run.

    Returns:
        The report; `stopped_early` says why when the daily quota ran out (everything loaded
        until then is committed, cursor included).

    Raises:
        RunLocked: another run of the entity held its run lock for longer than lock_wait_seconds.
        RunLockLost: the run lock's connection was lost during the run and another run took the
            lock (a RunLocked: what was committed stands, cursor included).
        StalledRun: the loaders made no progress for stall_seconds.
        LockWaitsExhausted: a batch timed out on row locks in every attempt.
    """
    if entity.cursor is not CursorKind.TIME and (since is not None or until is not None or scope != INCREMENTAL):
        raise ValueError(
            f"{entity.name} has no time filter in Keap: every run is a full pass, so it takes no window"
        )
    started = time.monotonic()
    report = SyncReport(entity=entity.name, scope=scope, strategy=strategy, since=since, until=until)
    requests_before = client.stats.requests
    with (
        run_lock(
            database_url, entity.name, wait_seconds=lock_wait_seconds, holder=run_holder(entity, run_id),
            on_wait=on_lock_wait,
        ) as lock,
        connect(database_url) as conn,
    ):
        report.waited_for_lock_seconds = lock.waited_seconds
        # every change Keap made before this is read by the time the run completes (sync_health's lag)
        fresh_as_of = server_time(conn)
        before = entity.resolve_before_sync()
        if before is not None:
            before(client, database_url)
        cursor = get_cursor(conn, entity.name, scope)
        cost = stream_cost(conn, entity)

        def budget() -> int:
            if max_changes is not None:
                return max_changes
            return DEFAULT_MAX_CHANGES if decoding(conn) else UNWATCHED_MAX_CHANGES

        initial_budget = budget()
        conn.rollback()
        start = since
        filters: tuple[str, ...] = ()
        if entity.cursor is CursorKind.ID:
            # a full pass ordered by id; a killed pass resumes after the last id it committed
            if cursor is not None and cursor.resume_after is not None:
                filters = (f"{entity.id_filter}>{cursor.resume_after}",)
                log.info("%s: resuming the pass after id %s", entity.name, cursor.resume_after)
        elif entity.cursor is CursorKind.TIME:
            finished_window = until is not None and cursor is not None and cursor.value >= until
            if finished_window:
                # a window that was synced to its end is read again in full (a deliberate re-run,
                # say after a fix); only an interrupted window resumes from its cursor
                log.info("%s: %s was completed before; reading it again in full", entity.name, scope)
            elif cursor is not None and (start is None or cursor.value > start):
                start = cursor.value
                log.info("%s: resuming %s from cursor %s", entity.name, scope, start.isoformat())
        report.since = start
        pending: list[NormalizedPage] = []
        sizer = BatchSizer(
            min_pages=pages_per_batch, max_pages=max(pages_per_batch, max_pages_per_batch),
            max_changes=initial_budget, cost=cost,
        )
        checked = time.monotonic()

        def load(loader: psycopg.Connection, batch: Batch, turn: Turn) -> BatchOutcome:
            records, normalized, _, diff = batch
            return load_batch(
                loader, entity, records, scope=scope, run_id=run_id, strategy=strategy, merge_rule=merge_rule,
                diff=diff, normalized=normalized, turn=turn, lock_timeout_seconds=lock_timeout_seconds,
                max_rows=sizer.max_rows,
            )

        def committed(batch: Batch, outcome: BatchOutcome) -> None:
            # runs in commit order, one batch at a time (LoaderPool)
            records, _, page_count, _ = batch
            sizer.observe(outcome.counts, len(records), page_count)
            report.batches += 1
            report.committed_pages += page_count
            report.committed_records += len(records)
            report.counts.add(outcome.counts)
            report.dead_lettered += outcome.dead_lettered
            if outcome.max_updated_at is not None:
                report.cursor = max(report.cursor or outcome.max_updated_at, outcome.max_updated_at)
            report.requests = client.stats.requests - requests_before
            report.quota_available = client.stats.quota_available
            report.seconds = time.monotonic() - started
            if progress:
                progress(report)

        pool: LoaderPool[Batch, BatchOutcome] = LoaderPool(
            open_connection=lambda: connect(database_url, application_name=run_holder(entity, run_id)[:63]),
            size=loaders, load=load, committed=committed, stall_seconds=stall_seconds, name=entity.name,
        )

        def flush() -> None:
            nonlocal pending, checked
            if not pending:
                return
            # no batch goes to the loaders once another run may hold the lock (RunLockLost)
            lock.verify()
            if max_changes is None and time.monotonic() - checked >= DECODING_RECHECK_SECONDS:
                # a subscriber that came (or went) during a long run changes the budget of the next batches
                sizer.max_changes = budget()
                conn.rollback()
                checked = time.monotonic()
            records, normalized = combine(pending)
            # a first load writes every record: a page holding more than a transaction may write goes
            # to the loaders as several batches (they load side by side); a re-sync's batch commits in
            # parts instead, once its diff has said how many records it writes (pipeline.batch)
            parts = [(records, normalized)] if sizer.diff else split(records, normalized, sizer.max_rows)
            for part, part_normalized in parts:
                share = len(pending) * len(part) / max(len(records), 1)
                pool.submit((part, part_normalized, share, sizer.diff), batch_keys(part, part_normalized))
            pending = []

        # Raw record keys (pipeline.raw_keys) only where a run reads again what runs before it read:
        # every full pass (id / full cursors), and a window of a time-ordered entity (a backfill, a
        # partition, a re-sync). An incremental run reads what changed since its cursor, whose bytes
        # are new by definition: there the keys would be a second write per record (a first load
        # costs PostgreSQL 17-31% more CPU with them) that no later incremental run reads.
        rereads = entity.cursor is not CursorKind.TIME or scope != INCREMENTAL
        # the read-ahead thread's own connection: it looks up the records whose bytes were normalized before
        finder = (
            connect(database_url, application_name=f"{run_holder(entity, run_id)} read-ahead"[:63]) if rereads else None
        )
        find: Find | None = PageFinder(partial(find_known, finder, entity.name)) if finder is not None else None

        def made(p: Page) -> NormalizedPage:
            if p.raw is not None and is_split(p.records):
                records, result = read_page(entity, p.records, p.raw, find)
                return NormalizedPage(records, result)
            return normalize_page(entity, p.records, p.raw)

        with finder or nullcontext(), pool:
            # on a re-read records arrive as their bytes (decode=False): only those not normalized before are decoded
            pages = client.iter_pages(
                entity.endpoint,
                fields=entity.fields or None,
                since=start,
                until=until,
                order_by=entity.order_by or None,
                page_size=page_size,
                filters=filters,
                decode=not rereads,
            )
            try:
                # the next pages download and normalize in a thread while the loaders work (the
                # client is used by that thread only; the loaders wait on PostgreSQL meanwhile)
                for page in prefetch((made(p) for p in pages), depth=2):
                    report.pages += 1
                    report.records_seen += len(page.records)
                    pending.append(page)
                    if len(pending) >= sizer.pages:
                        flush()
            except KeapQuotaExhausted as err:
                # the pages already fetched are loaded and the cursor saved (below, and as the pool closes)
                report.stopped_early = str(err)
                log.warning("%s: stopping early, cursor saved: %s", entity.name, err)
            flush()
        if until is not None and scope != INCREMENTAL and report.stopped_early is None:
            # the whole window is loaded: mark it complete (see finished_window above)
            with conn.transaction():
                advance_cursor(conn, entity.name, scope, until, 0, run_id)
        if entity.cursor is CursorKind.ID and report.stopped_early is None and report.cursor is not None:
            # the pass reached the end: the next one starts from the first id
            with conn.transaction():
                advance_cursor(conn, entity.name, scope, report.cursor, 0, run_id, pass_done=True)
        report.linked = link_dependents(conn, entity, lock_timeout_seconds)
        if report.stopped_early is None and (until is None or until >= fresh_as_of):
            # complete, and it read up to the present (a backfill of past days does not make the entity fresh)
            with conn.transaction():
                record_sync_success(conn, entity, fresh_as_of)
    report.requests = client.stats.requests - requests_before
    report.quota_available = client.stats.quota_available
    report.seconds = time.monotonic() - started
    return report
