"""Deletions in Keap reach the database: one reconcile pass of an entity, by an id scan, with a safety stop.

Keap v2 lists no deletions, so a pass pages through every id Keap has (contacts with ``fields=id``;
the others as their endpoint allows, entities.Entity.id_fields), COPYs them into the entity's ids
table page by page, and at the end lets the generated SQL find, set-based, the live rows Keap no
longer lists (db.reconcile, sql/functions/70-entity-template.sql). Safety first:

- nothing is deleted unless the pass completed: every page read, no quota stop, no error, no
  listed record without a usable id (a kill leaves the pass 'running'; the next pass marks it
  interrupted and starts over);
- rows created or written by a sync after the pass started, and rows Keap updated after it
  (less a clock-skew allowance), are never deleted by it;
- more than ``max_share`` of the live rows or more than ``max_count`` stops the pass before it
  deletes: the would-be ids are recorded and wait for an explicit confirmation (confirm_pass);
- a pass that the day's remaining quota would not cover, plus a reserve for the incremental
  syncs, is skipped before it reads more than one page.

Its soft deletes (up to ``max_count``, 10,000 by default) commit in transactions that each stream
at most ``max_changes`` changes to realtime subscribers, the budget of a sync batch (docs/realtime.md):
a pass of 10,000 deletions is 40 transactions of 250 rows, not one of 20,000 changes that every app
write committed behind it would wait for.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from keap_pipeline.db import reconcile as db
from keap_pipeline.db.connect import connect
from keap_pipeline.db.locks import run_lock
from keap_pipeline.entities import Entity
from keap_pipeline.keap import KeapClient, KeapNotFound, KeapQuotaExhausted
from keap_pipeline.keap.quota import QuotaState
from keap_pipeline.normalize.fields import Reject, id_digits
from keap_pipeline.pipeline.batching import DEFAULT_MAX_CHANGES

log = logging.getLogger(__name__)

# the keap_id column's limit (varchar(255)); a longer id cannot name a row here
_ID_LIMIT = 255
# ids COPYed per transaction: about fifty full pages. Each transaction has a fixed cost that a page
# of 1,000 short ids does not amortise (a million ids on a busy PostgreSQL 15: 17.1 s in transactions
# of 1,000, 2.5 s of 10,000, 1.9 s of 50,000); the buffer stays at a few megabytes
FLUSH_IDS = 50_000


@dataclass(frozen=True)
class ReconcileSettings:
    """The knobs of a pass (the CLI's flags, the Dagster asset's config).

    Attributes:
        max_share: stop before deleting more than this share of the entity's live rows (0.02 = 2%).
        max_count: stop before deleting more than this many rows.
        page_size: records per request (Keap's maximum, 1000, is the cheapest pass).
        quota_reserve_share: the share of the day's quota kept for the incremental syncs: a pass that
            the remaining quota would not cover with this much left over is skipped.
        clock_skew_seconds: how far Keap's clock may be ahead of ours: rows Keap updated this long
            before the pass started are still kept.
        lock_wait_seconds: how long to wait for another pass of the entity.
        lock_timeout_seconds: the longest wait for one row lock while applying.
        max_changes: the most changes one transaction of soft deletes streams to realtime
            subscribers (a soft delete: its row and its sync_status row, where published).
    """

    max_share: float = 0.02
    max_count: int = 10_000
    page_size: int = 1000
    quota_reserve_share: float = 0.10
    clock_skew_seconds: float = 600.0
    lock_wait_seconds: float = 60.0
    lock_timeout_seconds: float = 30.0
    max_changes: int = DEFAULT_MAX_CHANGES

    def __post_init__(self) -> None:
        if not 0 <= self.max_share <= 1:
            raise ValueError(f"max_share must be a share from 0 to 1, got {self.max_share}")
        if self.max_count < 0:
            raise ValueError(f"max_count must be 0 or more, got {self.max_count}")
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000, got {self.page_size}")
        if not 0 <= self.quota_reserve_share < 1:
            raise ValueError(f"quota_reserve_share must be in [0, 1), got {self.quota_reserve_share}")
        if self.clock_skew_seconds < 0:
            raise ValueError(f"clock_skew_seconds must be 0 or more, got {self.clock_skew_seconds}")
        if self.max_changes < 1:
            raise ValueError(f"max_changes must be 1 or more, got {self.max_changes}")


@dataclass
class ReconcileReport:
    """What one pass did, for logs, Dagster metadata and the command line (counts and causes only)."""

    entity: str
    pass_id: str = ""
    status: str = db.RUNNING
    reason: str | None = None
    pages: int = 0
    listed: int = 0
    requests: int = 0
    estimated_requests: int = 0
    quota_limit: int | None = None
    quota_available: int | None = None
    live: int = 0
    missing: int = 0
    deleted: int = 0
    restored: int = 0
    kept_recent: int = 0
    deleted_here_too: int = 0
    # confirm_missing entities: ids missing from the listing that a get found in Keap after all
    found_by_get: int = 0
    abandoned_passes: int = 0
    copy_seconds: float = 0.0
    apply_seconds: float = 0.0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def quota_share(self) -> float | None:
        """The requests spent as a share of the day's quota (None when Keap did not say)."""
        return self.requests / self.quota_limit if self.quota_limit else None

    @property
    def share(self) -> float:
        """What the pass found missing, as a share of the live rows."""
        return self.missing / self.live if self.live else 0.0

    @property
    def database_seconds(self) -> float:
        """Time spent in PostgreSQL: COPY of the ids plus the set-based judgement."""
        return self.copy_seconds + self.apply_seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        data = asdict(self)
        data["quota_share"] = self.quota_share
        data["share"] = self.share
        data["database_seconds"] = self.database_seconds
        return data

    def summary(self) -> str:
        """One line for logs and the command line."""
        quota = f" ({self.quota_share:.2%} of the day's quota)" if self.quota_share is not None else ""
        head = f"{self.entity} reconcile [{self.status}]: {self.listed} listed in {self.pages} pages, {self.requests} requests{quota}"
        if self.status in (db.COMPLETED, db.STOPPED, db.CONFIRMED):
            head += (
                f"; {self.live} live, {self.missing} missing, {self.deleted} soft-deleted, {self.restored} restored, "
                f"{self.kept_recent} kept (changed during the pass)"
            )
            if self.deleted_here_too:
                head += f", {self.deleted_here_too} deleted here and in Keap"
        head += f"; {self.seconds:.1f}s (database {self.database_seconds:.2f}s)"
        return head + (f"; {self.reason}" if self.reason else "")


Progress = Callable[[ReconcileReport], None]


def page_ids(records: Iterable[Any]) -> tuple[list[str], int]:
    """The ids of one listing page, read as the normalizers read a record's id, and how many had none usable.

    Args:
        records: the page's records as the client decoded them.

    Returns:
        (ids, unusable): an id is ASCII digits (a string, or a non-negative JSON integer) of at
        most 255 characters; a record without one cannot say which row it keeps.
    """
    ids: list[str] = []
    unusable = 0
    for record in records:
        try:
            if not isinstance(record, dict):
                raise Reject("id", "the record is not an object")
            ident = id_digits(record.get("id"), "id")
        except Reject:
            unusable += 1
            continue
        if len(ident) > _ID_LIMIT:
            unusable += 1
            continue
        ids.append(ident)
    return ids, unusable


def estimate_requests(rows: int, page_size: int) -> int:
    """Requests a listing of about `rows` records costs: its pages, and one more in case Keap ends on an empty one."""
    return math.ceil(rows / page_size) + 1


def _short_of_quota(quota: QuotaState | None, needed: int, reserve_share: float) -> str | None:
    """Why the remaining quota would not cover `needed` requests plus the reserve, or None when it would (or is unknown)."""
    if quota is None or quota.quota_available is None:
        return None
    reserve = math.ceil((quota.quota_limit or 0) * reserve_share)
    if quota.quota_available >= needed + reserve:
        return None
    resets = f", resets {quota.quota_resets_at.isoformat()}" if quota.quota_resets_at else ""
    return (
        f"skipped: the day's quota would not cover the pass: about {needed} requests needed plus {reserve} kept for "
        f"the incremental syncs, {quota.quota_available} left of {quota.quota_limit if quota.quota_limit else '?'}{resets}; "
        "nothing was deleted, the next scheduled pass tries again"
    )


def holder(entity: Entity, run_id: str | None) -> str:
    """How a pass shows itself in pg_stat_activity to another pass of the entity."""
    return f"keap-pipeline reconcile {entity.name} {run_id or 'run'}"


def reconcile_lock_name(entity: Entity) -> str:
    """The advisory lock of an entity's reconcile passes (not its sync's: a pass runs beside syncs)."""
    return f"{entity.name}:reconcile"


def reconcile_entity(
    client: KeapClient,
    database_url: str,
    entity: Entity,
    settings: ReconcileSettings | None = None,
    *,
    run_id: str | None = None,
    progress: Progress | None = None,
    on_lock_wait: Callable[[str], None] | None = None,
) -> ReconcileReport:
    """One reconcile pass of `entity`: list every id Keap has, then restore and soft-delete set-based.

    A pass runs beside the entity's syncs (it takes its own lock, not theirs): what a sync writes
    during the pass is protected from it. The pass's record is keap_pipeline.reconcile_passes.

    Args:
        client: a Keap client.
        database_url: the sync database.
        entity: the entity.
        settings: the limits and knobs (ReconcileSettings()).
        run_id: kept with the pass.
        progress: called after every page with the running report.
        on_lock_wait: told (with who holds it) when another pass of the entity is in progress.

    Returns:
        The report. Its status: completed (applied), stopped (the safety limits held the deletions
        back: confirm_pass applies them), interrupted (quota ran out mid-pass, or listed records had
        no usable id; nothing deleted), skipped (the quota would not cover it; nothing deleted).

    Raises:
        RunLocked: another pass of the entity held its lock for longer than lock_wait_seconds.
        RunLockLost: the lock's connection was lost during the listing and another pass took the
            lock (the pass is recorded as failed; nothing deleted).
        KeapError: the listing failed (the pass is recorded as failed; nothing deleted).
    """
    settings = settings or ReconcileSettings()
    report = ReconcileReport(entity=entity.name, settings=asdict(settings))
    started = time.monotonic()
    requests_before = client.stats.requests
    with (
        run_lock(
            database_url, reconcile_lock_name(entity), wait_seconds=settings.lock_wait_seconds,
            holder=holder(entity, run_id), on_wait=on_lock_wait,
        ) as lock,
        connect(database_url, application_name=holder(entity, run_id)[:63]) as conn,
    ):
        start = db.begin_pass(
            conn, entity, run_id=run_id, clock_skew=timedelta(seconds=settings.clock_skew_seconds),
            max_share=settings.max_share, max_count=settings.max_count,
            lock_timeout_seconds=settings.lock_timeout_seconds,
        )
        report.pass_id = str(start.id)
        report.abandoned_passes = start.abandoned
        if start.abandoned:
            log.warning("%s: %d earlier pass(es) had not finished (killed?); marked interrupted", entity.name, start.abandoned)
        report.estimated_requests = estimate_requests(start.known_rows, settings.page_size)

        def spent() -> int:
            return client.stats.requests - requests_before

        def finish(status: str, reason: str) -> ReconcileReport:
            report.status, report.reason, report.requests = status, reason, spent()
            _quota_figures(report, client)
            db.end_pass(conn, entity, start.id, status, reason, pages=report.pages, requests=report.requests)
            report.seconds = time.monotonic() - started
            log.warning("%s: %s", entity.name, reason)
            return report

        try:
            # before the first request when this process already knows the quota, else after the first page
            short = _short_of_quota(client.pacer.quota, report.estimated_requests, settings.quota_reserve_share)
            if short:
                return finish(db.SKIPPED, short)
            stop = _read_listing(conn, client, entity, start, settings, report, spent, progress, started)
            if stop is not None:
                return finish(*stop)
            if entity.confirm_missing:
                _confirm_missing(conn, client, entity, start, settings, report, spent)
            report.requests = spent()
            # the listing may have taken long: no judging once another pass may hold the lock (its
            # connection lost meanwhile and the lock taken by another pass: RunLockLost, nothing deleted)
            lock.verify(every_seconds=0)
            moment = time.monotonic()
            judged = db.judge_pass(
                conn, entity, start, max_share=settings.max_share, max_count=settings.max_count,
                pages=report.pages, requests=report.requests, lock_timeout_seconds=settings.lock_timeout_seconds,
                chunk_rows=db.deletion_chunk(conn, entity, settings.max_changes),
            )
            report.apply_seconds = time.monotonic() - moment
        except KeapQuotaExhausted as err:
            return finish(
                db.INTERRUPTED,
                f"interrupted: the daily quota ran out after {report.pages} pages ({err}); nothing was deleted, "
                "the next pass starts over",
            )
        except BaseException as err:
            # an error, or the process told to stop: the pass is failed, nothing deleted (a kill -9
            # leaves it running; the next pass marks it interrupted)
            _record_failure(conn, entity, start.id, report, spent(), err)
            raise
    report.status = db.STOPPED if judged.stopped else db.COMPLETED
    report.live, report.missing, report.deleted = judged.live, judged.missing, judged.deleted
    report.restored, report.kept_recent, report.deleted_here_too = judged.restored, judged.kept_recent, judged.deleted_here_too
    if judged.stopped:
        report.reason = db.stop_reason(entity, judged, settings.max_share, settings.max_count, start.id)
        log.warning("%s: %s", entity.name, report.reason)
    _quota_figures(report, client)
    report.seconds = time.monotonic() - started
    return report


def _read_listing(
    conn: Any,
    client: KeapClient,
    entity: Entity,
    start: db.PassStart,
    settings: ReconcileSettings,
    report: ReconcileReport,
    spent: Callable[[], int],
    progress: Progress | None,
    started: float,
) -> tuple[str, str] | None:
    """Page every id Keap lists into the pass's ids table; (status, reason) when the pass must end without deleting.

    Raises:
        KeapQuotaExhausted: the day's quota ran out mid-listing.
    """
    checked = client.pacer.quota is not None
    unusable = 0
    buffered: list[str] = []

    def flush() -> None:
        moment = time.monotonic()
        db.copy_ids(conn, entity, start.id, buffered, pages=report.pages, requests=report.requests)
        report.copy_seconds += time.monotonic() - moment
        buffered.clear()

    pages = client.iter_pages(
        entity.endpoint,
        fields=entity.id_fields or None,
        order_by=entity.id_order_by or None,
        page_size=settings.page_size,
    )
    for page in pages:
        ids, bad = page_ids(page.records)
        unusable += bad
        report.pages += 1
        report.listed += len(ids)
        report.requests = spent()
        buffered.extend(ids)
        if len(buffered) >= FLUSH_IDS:
            flush()
        if not checked:
            checked = True
            left = max(0, report.estimated_requests - report.requests)
            short = _short_of_quota(client.pacer.quota, left, settings.quota_reserve_share)
            if short:
                return db.SKIPPED, short
        if progress:
            report.seconds = time.monotonic() - started
            progress(report)
    flush()
    if unusable:
        return (
            db.INTERRUPTED,
            f"interrupted: {unusable} listed record(s) carry no usable id (digits, at most {_ID_LIMIT}), so the "
            "listing cannot say which rows Keap still has; nothing was deleted",
        )
    return None


def _quota_figures(report: ReconcileReport, client: KeapClient) -> None:
    report.quota_limit = client.stats.quota_limit
    report.quota_available = client.stats.quota_available


def _record_failure(conn: Any, entity: Entity, pass_id: uuid.UUID, report: ReconcileReport, requests: int, err: BaseException) -> None:
    """Mark the pass failed (best effort: the connection may be the thing that failed)."""
    reason = f"failed: {type(err).__name__}: {err}"[:2000] if str(err) else f"failed: {type(err).__name__}"
    try:
        conn.rollback()
        db.end_pass(conn, entity, pass_id, db.FAILED, reason + "; nothing was deleted", pages=report.pages, requests=requests)
    except Exception:  # the original error is what the caller must see
        log.debug("%s: could not record the failed pass", entity.name, exc_info=True)


def _confirm_missing(
    conn: Any,
    client: KeapClient,
    entity: Entity,
    start: db.PassStart,
    settings: ReconcileSettings,
    report: ReconcileReport,
    spent: Callable[[], int],
) -> None:
    """Ask Keap for each id the listing missed (entities whose listing order an update can change).

    Only while the missing ids are within the safety limits (else the judgement stops the pass
    anyway, and a truncated listing would cost a request per row). An id Keap still has is added to
    the pass's ids, as if listed.
    """
    missing = db.missing_ids(conn, entity, start)
    live = max(start.known_rows, 1)
    if len(missing) > settings.max_count or len(missing) > settings.max_share * live:
        return
    found: list[str] = []
    for ident in missing:
        try:
            client.get(f"{entity.path}/{ident}")
        except KeapNotFound:
            continue
        found.append(ident)
    if found:
        db.copy_ids(conn, entity, start.id, found, pages=report.pages, requests=spent())
        report.listed += len(found)
    report.found_by_get = len(found)


def confirm_pass(
    database_url: str, entity: Entity, pass_id: str, *, lock_timeout_seconds: float = 30.0, lock_wait_seconds: float = 60.0,
    max_changes: int = DEFAULT_MAX_CHANGES,
) -> int:
    """Apply the deletions a stopped pass recorded (the explicit confirmation the safety stop asks for).

    Args:
        database_url: the sync database.
        entity: the entity.
        pass_id: the stopped pass's id.
        lock_timeout_seconds: the longest wait for one row lock.
        lock_wait_seconds: how long to wait for a pass of the entity in progress.
        max_changes: the most changes one transaction of soft deletes streams (ReconcileSettings).

    Returns:
        How many rows were soft-deleted.

    Raises:
        ReconcileError: not a stopped pass of the entity, or superseded by a later pass.
        ValueError: pass_id is not a uuid.
    """
    ident = uuid.UUID(pass_id)
    with (
        run_lock(database_url, reconcile_lock_name(entity), wait_seconds=lock_wait_seconds, holder=holder(entity, "confirm")),
        connect(database_url) as conn,
    ):
        return db.confirm_pass(
            conn, entity, ident, lock_timeout_seconds=lock_timeout_seconds,
            chunk_rows=db.deletion_chunk(conn, entity, max_changes),
        )
