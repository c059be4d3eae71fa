"""One push run: claim due queue items, check them against Keap, send, write back; recover what a crash left.

Per entity (tags, then contacts), as a live pusher (db.outbound.pusher_lock: a claim key, and the
entity's run lock shared, so the push yields to a sync), batch after batch:

1. **claim** (a transaction): up to ``batch_size`` items, one per record, in-flight items of dead
   pushers first, then by priority and schedule (``for update skip locked``).
2. **look** (no transaction open): Keap's current records of the claimed rows that have a keap_id
   (one listing per 100 ids); for rows without one whose earlier create is unconfirmed, the record
   that create may have made (outbound.recover).
3. **check and mark** (a transaction, as the ingestion): Keap's records go through the ingestion's
   own upsert, so a change Keap made since the row's base version is a conflict resolved by the
   configured strategy exactly as a sync resolves it (keap_wins drops the item, manual holds it,
   supabase_wins and merge leave it to be sent, merged); records found after a crash are linked;
   then each item still due gets its plan (what differs between the row and Keap's record: update_mask
   names only that) and is marked in flight, with the row as sent, BEFORE any request leaves.
4. **send**: each plan's requests.
5. **write back** (a transaction): Keap's answers, normalized by the ingestion's normalizer, are
   written to their rows with the created keap_id and Keap's update time and content hash, in the
   transaction that completes their items (audited as 'push'); failures are finished (retry with
   backoff, failed with Keap's message, released unsent).

With senders apart from the reading client, step 4 of a batch runs in a thread while steps 1-3 of
the next run here (their records never overlap: a record with an item in flight is not claimed);
the next batch is sent only after the previous one is written back and did not stop the run.

A kill between any two steps loses nothing and sends nothing twice that matters: a claimed item
is claimed again, an item in flight is recovered (an update or delete is recomputed from Keap's
record, so sending it again is harmless; a create is looked up before it is sent again).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg

from keap_pipeline.db import outbound as db
from keap_pipeline.db.connect import connect
from keap_pipeline.db.load import CONFLICT_STRATEGIES, MERGE_RULES
from keap_pipeline.entities import ENTITIES
from keap_pipeline.keap import KeapClient, KeapError
from keap_pipeline.keap.errors import KeapAuthError, KeapQuotaExhausted, KeapRateLimited
from keap_pipeline.outbound.plan import Plan, Unsendable
from keap_pipeline.outbound.recover import find_created
from keap_pipeline.outbound.report import PushReport
from keap_pipeline.outbound.send import Sent, send, verify
from keap_pipeline.outbound.spec import OutboundSpec
from keap_pipeline.outbound.specs import SPECS, SUPPORTED_TABLES, UNSUPPORTED_REASON
from keap_pipeline.pipeline.retries import with_retries

log = logging.getLogger(__name__)

Progress = Callable[[PushReport], None]


@dataclass(frozen=True)
class PushSettings:
    """How a push run behaves.

    Attributes:
        strategy: conflict strategy, as the ingestion's (keap_wins, supabase_wins, manual, merge).
        merge_rule: for merge, fields changed on both sides (keap_wins, supabase_wins, manual).
        batch_size: items claimed per batch (one transaction each for claim, mark, write-back).
        limit: at most this many items claimed in the whole run (None: until the queue has none due).
        max_seconds: stop claiming after this long (None: no bound).
        retry_base_seconds: the first retry's delay; doubles per attempt, with jitter.
        retry_max_seconds: the longest delay between attempts.
        lock_timeout_seconds: the longest wait for one row lock (then the transaction is retried).
        run_id: names the pusher in pg_stat_activity.
    """

    strategy: str = "keap_wins"
    merge_rule: str = "manual"
    batch_size: int = 100
    limit: int | None = None
    max_seconds: float | None = None
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lock_timeout_seconds: float = 30.0
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in CONFLICT_STRATEGIES:
            raise ValueError(f"unknown conflict strategy {self.strategy!r}; use one of {', '.join(CONFLICT_STRATEGIES)}")
        if self.merge_rule not in MERGE_RULES:
            raise ValueError(f"unknown merge rule {self.merge_rule!r}; use one of {', '.join(MERGE_RULES)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def retry_delay(settings: PushSettings, attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped, half of it jittered."""
    base = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempts - 1))
    return base * (0.5 + 0.5 * (rng or random).random())


@dataclass
class Work:
    """One claimed item on its way: its row, Keap's record, the plan and what sending it gave."""

    item: db.Claimed
    row: dict[str, Any] | None = None
    keap_id: str | None = None
    current: dict[str, Any] | None = None
    plan: Plan | None = None
    version: int = 0
    sent: Sent | None = None
    found: dict[str, Any] | None = None
    created_before: bool = False


class Stop(Exception):
    """Internal: the run stops after this batch (quota spent, credential refused)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Run:
    spec: OutboundSpec
    conn: psycopg.Connection
    lock: db.PusherLock
    client: KeapClient
    senders: Sequence[KeapClient]
    settings: PushSettings
    report: PushReport
    rng: random.Random = field(default_factory=random.Random)

    def tx(self, work: Callable[[], Any], what: str) -> Any:
        """One push transaction as the ingestion, retried like a batch on a concurrent writer."""

        def attempt() -> Any:
            with self.conn.transaction():
                db.begin_push(self.conn, lock_timeout_seconds=self.settings.lock_timeout_seconds)
                return work()

        return with_retries(
            self.spec.entity, attempt, lock_timeout_seconds=self.settings.lock_timeout_seconds, what=what, logger=log
        )


def push(
    client: KeapClient,
    database_url: str,
    *,
    entities: Sequence[str] | None = None,
    retry_failed: bool = False,
    settings: PushSettings | None = None,
    senders: Sequence[KeapClient] = (),
    progress: Progress | None = None,
) -> PushReport:
    """Send the queue's due app changes to Keap.

    Args:
        client: the Keap client for reads (and sends, unless `senders` are given).
        database_url: the sync database.
        entities: the entities to push (default every one the pusher sends: tags, contacts).
        retry_failed: first make failed items pending again (after their cause was fixed).
        settings: how the run behaves (PushSettings).
        senders: clients that send plans side by side, one thread each (default: `client` alone). When
            `client` is not among them, a batch is sent while the next one is claimed, read and marked.
        progress: called after every batch with the running report.

    Returns:
        The report; ``stopped_early`` says why when the quota ran out or the credential was refused
        (what was sent is written back; the rest waits in the queue).

    Raises:
        KeyError: an entity the pusher does not send.
    """
    settings = settings or PushSettings()
    wanted = [name for name in SPECS if entities is None or name in entities]
    unknown = sorted(set(entities or ()) - set(SPECS))
    if unknown:
        supported = ", ".join(SPECS)
        raise KeyError(f"the pusher sends {supported}; not {', '.join(unknown)} (their items are kept as unsupported)")
    report = PushReport()
    started = time.monotonic()
    requests_before = client.stats.requests + sum(s.stats.requests for s in senders if s is not client)
    run_id = settings.run_id or f"push-{uuid.uuid4().hex[:8]}"
    with connect(database_url, application_name=f"keap-pipeline push {run_id}"[:63]) as conn:
        with conn.transaction():
            db.begin_push(conn, lock_timeout_seconds=settings.lock_timeout_seconds)
            if retry_failed:
                report.retried_failed = db.retry_failed(conn, [SPECS[n].table for n in wanted])
            # never sent, never dropped: items of entities without a write path say so
            report.unsupported = db.mark_unsupported(conn, SUPPORTED_TABLES, UNSUPPORTED_REASON)
        for name in wanted:
            spec = SPECS[name]
            try:
                with db.pusher_lock(database_url, spec.entity.name, holder=f"keap-pipeline push {name} {run_id}") as lock:
                    run = _Run(spec, conn, lock, client, senders or (client,), settings, report)
                    _push_entity(run, started, progress)
            except db.SyncInProgress as err:
                report.yielded.append(str(err))
                log.info("%s", err)
            except Stop as stop:
                report.stopped_early = stop.reason
                break
            finally:
                report.requests = client.stats.requests + sum(s.stats.requests for s in senders if s is not client)
                report.requests -= requests_before
                report.seconds = time.monotonic() - started
    return report


@dataclass
class _Batch:
    """A checked and marked batch: its items in flight with their plans, and the context they were planned in."""

    planned: list[Work]
    context: Any
    stop: str | None = None
    # set when the run fails while this batch is out: its sender stops after the request it is on
    abandoned: bool = False

    @property
    def throttled(self) -> bool:
        """Keap throttled a send beyond the client's retries."""
        return any(
            w.sent is not None and w.sent.failure is not None and isinstance(w.sent.failure.error, KeapRateLimited)
            for w in self.planned
        )


@dataclass
class _Flight:
    batch: _Batch
    future: Future[None]


def _overlaps(run: _Run) -> bool:
    """Whether batches can be sent while the next is prepared: only when no sender is the reading client.

    A KeapClient is not shared between threads: the reads (listings, lookups) stay on `run.client`
    in this thread, and the sends go to the senders in another.
    """
    return all(s is not run.client for s in run.senders)


def _push_entity(run: _Run, started: float, progress: Progress | None) -> None:
    """Batch after batch; with separate senders, batch N is sent while batch N+1 is claimed, read and marked.

    Overlapping is safe because the claim never takes an item of a record that has one in flight
    (claim_outbound skips records with a processing item of any live pusher, this one included), so
    the two batches never share a record. After batch N lands, N+1 is sent only if N did not stop
    the run or meet Keap's throttling; otherwise N+1 is released unsent, as the rest of a batch is.
    """
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keap-push-send") if _overlaps(run) else None
    flight: _Flight | None = None
    ready: _Batch | None = None

    def landed(batch: _Batch) -> bool:
        """Write a sent batch back; True: the run goes on."""
        _write_back(run, batch)
        run.report.seconds = time.monotonic() - started
        if progress is not None:
            progress(run.report)
        if batch.stop is not None:
            raise Stop(batch.stop)
        if batch.throttled:
            # Keap throttled beyond the client's retries: the rest waits for the next run (its backoff)
            run.report.yielded.append(f"{run.spec.entity.name}: throttled by Keap (HTTP 429); the rest waits")
            return False
        return True

    try:
        while True:
            items = _claim(run, started)
            throttled = False
            if items:
                ready, throttled = _prepare(run, items)
            if flight is not None:
                flight.future.result()
                batch, flight = flight.batch, None
                if batch.stop is not None or batch.throttled:
                    if ready is not None:  # marked in flight, never sent: released, no attempt spent
                        _write_back(run, ready)
                        ready = None
                if not landed(batch):
                    return
            if ready is None:
                if not items:
                    return
                run.report.seconds = time.monotonic() - started
                if progress is not None:
                    progress(run.report)
                if throttled:
                    run.report.yielded.append(f"{run.spec.entity.name}: throttled by Keap (HTTP 429); the rest waits")
                    return
                continue
            batch, ready = ready, None
            if sender is None:
                _send_all(run, batch)
                if not landed(batch):
                    return
            else:
                flight = _Flight(batch, sender.submit(_send_all, run, batch))
    finally:
        if flight is not None:
            # something failed while a batch was out: its sender stops after the request it is on, and what
            # it sent is landed (the rest released); if its sending itself failed, its items stay in flight
            # for the next push to recover (a create is looked up before it is sent again)
            flight.batch.abandoned = True
            try:
                flight.future.result()
                _write_back(run, flight.batch)
            except Exception:
                log.exception("%s: a batch in flight could not be written back; the next push recovers it",
                              run.spec.entity.name)
        if ready is not None:
            try:
                _write_back(run, ready)
            except Exception:
                log.exception("%s: a prepared batch could not be released; the next push recovers it",
                              run.spec.entity.name)
        if sender is not None:
            sender.shutdown(wait=True)


def _claim(run: _Run, started: float) -> list[db.Claimed]:
    """The next batch's items (claimed, counted), or none: the limit or time is reached, a sync waits, none due."""
    settings = run.settings
    room = settings.batch_size
    if settings.limit is not None:
        room = min(room, settings.limit - run.report.claimed)
    if room <= 0:
        return []
    if settings.max_seconds is not None and time.monotonic() - started >= settings.max_seconds:
        return []
    if run.report.claimed and db.sync_waiting(run.lock):
        run.report.yielded.append(f"{run.spec.entity.name}: a sync or replay is waiting; the push yields to it")
        return []
    items: list[db.Claimed] = run.tx(partial(db.claim, run.conn, run.lock.key, run.spec.table, room), "claim")
    run.report.claimed += len(items)
    run.report.recovered += sum(1 for i in items if i.recovered)
    return items


def _prepare(run: _Run, items: list[db.Claimed]) -> tuple[_Batch | None, bool]:
    """Look, check and mark one claimed batch (module docstring, steps 2-3).

    Returns:
        The batch to send (None: nothing left to send), and whether reading Keap was throttled.
    """
    spec, conn, key = run.spec, run.conn, run.lock.key
    works = {i.id: Work(i) for i in items}
    ids = [i.entity_id for i in items]

    def read() -> tuple[dict[uuid.UUID, dict[str, Any]], dict[uuid.UUID, str], dict[uuid.UUID, db.UnconfirmedSend], Any]:
        rows = db.read_rows(conn, spec.entity, ids)
        gone = [i for i in ids if i not in rows]
        return (
            rows, db.audited_keap_ids(conn, spec.table, gone), db.unconfirmed_sends(conn, spec.table, ids),
            spec.context(conn, list(rows.values())),
        )

    rows, audited, unconfirmed, context = run.tx(read, "read")
    finishes: list[db.Finish] = []
    for w in works.values():
        w.row = rows.get(w.item.entity_id)
        w.keap_id = w.row.get("keap_id") if w.row is not None else audited.get(w.item.entity_id)

    try:
        # look: the record an unconfirmed create may have made, before anything is created again
        linked = _linked(run)
        for w in works.values():
            doubt = unconfirmed.get(w.item.entity_id)
            if w.row is None or w.keap_id is not None or doubt is None:
                continue
            try:
                w.found = find_created(spec, run.client, w.row, doubt, context, linked).record
            except Unsendable as err:
                finishes.append(db.Finish(w.item.id, "failed", str(err)))
                continue
            if w.found is not None:
                w.keap_id = str(w.found["id"])
                run.report.adopted += 1
        # look: Keap's current records of the rows that have their Keap record
        to_fetch = [w.keap_id for w in works.values() if w.keap_id and w.found is None and not _finished(w, finishes)]
        fetched = spec.fetch(run.client, [k for k in to_fetch if k]) if to_fetch else []
    except KeapError as err:
        if isinstance(err, KeapQuotaExhausted | KeapAuthError):
            _release(run, works, finishes)
            raise Stop(str(err)) from err
        reason = f"reading Keap's records: {type(err).__name__}"
        for w in works.values():
            if not _finished(w, finishes):
                finishes.append(db.Finish(w.item.id, "retry", reason, retry_delay(run.settings, w.item.attempts + 1, run.rng)))
        _count_finished(run.report, run.tx(lambda: db.finish(conn, key, finishes), "finish"), finishes)
        return None, isinstance(err, KeapRateLimited)
    current = spec.normalize(fetched)
    by_id = {str(r.get("id")): r for r in fetched if isinstance(r, dict)}
    found = spec.normalize([w.found for w in works.values() if w.found is not None])
    # an earlier send whose answer never came, and Keap holds exactly what it sent: that is the pusher's own
    # write, not a change made in Keap; it becomes the row's base before the check (no conflict with itself)
    confirmed = [
        w for w in works.values()
        if w.keap_id in current.values and w.item.entity_id in unconfirmed
        and any(spec.matches_all(sent, current.values[w.keap_id], context) for sent in unconfirmed[w.item.entity_id].payloads)
    ]

    def check_and_mark() -> tuple[list[db.Finish], Counter[str]]:
        # counted here and added to the report once the transaction commits (it may be retried)
        seen: Counter[str] = Counter()
        out = list(finishes)
        links = [
            db.WriteBack(w.item.id, w.item.entity_id, found.ordinals[str(w.found["id"])], 0, complete=False)
            for w in works.values() if w.found is not None
        ]
        db.write_back(conn, key, spec.entity, found.frame, links)
        if confirmed:
            own = spec.normalize([by_id[w.keap_id] for w in confirmed if w.keap_id])
            db.write_back(conn, key, spec.entity, own.frame, [
                db.WriteBack(w.item.id, w.item.entity_id, own.ordinals[w.keap_id], 0, complete=False)
                for w in confirmed if w.keap_id
            ])
        counts = db.precheck(conn, spec.entity, current.frame, strategy=run.settings.strategy, merge_rule=run.settings.merge_rule)
        seen["conflicts_keap_wins"] += counts.conflicts_keap_wins
        statuses = db.item_statuses(conn, list(works))
        fresh = db.read_rows(conn, spec.entity, ids)
        parked = db.open_conflicts(conn, spec.table, ids)
        db.drop_claims(conn, key, [i for i, s in statuses.items() if s not in ("pending", "processing")])
        marks: dict[uuid.UUID, dict[str, Any]] = {}
        nothing: list[Work] = []
        for w in works.values():
            w.plan = None
            if _finished(w, out):
                continue
            status = statuses.get(w.item.id)
            if status not in ("pending", "processing"):
                seen["held"] += status == "held"
                continue
            if w.item.entity_id in parked:
                out.append(db.Finish(w.item.id, "held", "held: the record has an open conflict; resolve the open "
                                     "sync_conflicts row to release it"))
                seen["held"] += 1
                continue
            try:
                w.plan = _plan(run, w, fresh.get(w.item.entity_id), current, found, by_id, context)
            except Unsendable as err:
                out.append(db.Finish(w.item.id, "failed", str(err), unsent=True))
                continue
            if w.plan is None:
                out.append(db.Finish(w.item.id, "done", "nothing to send: the record was created and removed here "
                                     "before it reached Keap"))
                seen["unchanged"] += 1
                continue
            if w.plan.empty:
                nothing.append(w)
                w.plan = None
                continue
            marks[w.item.id] = w.row if w.row is not None else {"keap_id": w.keap_id, "deleted": True}
        if nothing:
            # Keap holds the row already: written back as a send's answer would be
            records = [by_id.get(w.keap_id or "") or (w.found or {}) for w in nothing]
            staged = spec.normalize([r for r in records if r])
            db.write_back(conn, key, spec.entity, staged.frame, [
                db.WriteBack(w.item.id, w.item.entity_id, staged.ordinals.get(w.keap_id or ""), w.version, complete=True)
                for w in nothing
            ])
        seen["unchanged"] += len(nothing)
        db.mark_in_flight(conn, key, marks)
        statuses = db.finish(conn, key, out)
        seen["failed"] += sum(1 for s in statuses.values() if s == "error")
        return out, seen

    finished, seen = run.tx(check_and_mark, "check and mark")
    for name, n in seen.items():
        setattr(run.report, name, getattr(run.report, name) + n)
    planned = [w for w in works.values() if w.plan is not None and not _finished(w, finished)]
    return (_Batch(planned, context) if planned else None), False


def _plan(
    run: _Run, w: Work, row: dict[str, Any] | None, current: Any, found: Any, by_id: dict[str, Any], context: Any
) -> Plan | None:
    """What to send for one item now (Plan() when Keap holds the row already; None when there is nothing at all).

    Raises:
        Unsendable: the row cannot be sent as it is (the reason names the rule).
    """
    spec = run.spec
    w.row = row
    if row is None:  # removed here (hard delete): delete the Keap record its audited DELETE names
        return spec.delete_plan(w.keap_id) if w.keap_id else None
    w.version = int(row["version"])
    deleted = row.get("deleted_at") is not None
    if w.keap_id is None:
        return None if deleted else spec.create_plan(row, context)
    source = found if w.found is not None else current
    values = source.values.get(w.keap_id)
    raw = w.found if w.found is not None else by_id.get(w.keap_id)
    if values is None or raw is None:
        why = current.rejected.get(w.keap_id)
        if why is not None:
            raise Unsendable(f"Keap's current record cannot be loaded: {why}")
        if deleted:
            return spec.delete_plan(w.keap_id)  # a 404 is done: it is gone in Keap already
        raise Unsendable("the record is not in Keap any more (deleted or merged there); nothing was sent")
    w.current = raw
    if deleted:
        return spec.delete_plan(w.keap_id)
    changed = spec.changed(row, values, context)
    return spec.change_plan(row, raw, changed, context) if changed else Plan()


def _finished(w: Work, finishes: Sequence[db.Finish]) -> bool:
    return any(f.item == w.item.id for f in finishes)


def _raw(records: Sequence[Any], keap_id: str) -> dict[str, Any] | None:
    found = None
    for r in records:
        if isinstance(r, dict) and str(r.get("id")) == keap_id:
            found = r
    return found


def _linked(run: _Run) -> Callable[[set[str]], set[str]]:
    def linked(keap_ids: set[str]) -> set[str]:
        return run.tx(lambda: db.linked_keap_ids(run.conn, run.spec.entity, keap_ids), "linked ids")  # type: ignore[no-any-return]

    return linked


def _release(run: _Run, works: dict[uuid.UUID, Work], finishes: list[db.Finish]) -> None:
    rest = [db.Finish(w.item.id, "release", unsent=True) for w in works.values() if not _finished(w, finishes)]
    every = [*finishes, *rest]
    _count_finished(run.report, run.tx(lambda: db.finish(run.conn, run.lock.key, every), "release"), every)


def _count_finished(report: PushReport, statuses: dict[uuid.UUID, str], finishes: Sequence[db.Finish] = ()) -> None:
    """Count finished items by the status they ended in (a retry with its attempts used up is a failure)."""
    released = {f.item for f in finishes if f.outcome == "release"}
    for item, status in statuses.items():
        if status == "error":
            report.failed += 1
        elif item in released:
            report.released += 1
        elif status == "pending":
            report.retried += 1


def _send_all(run: _Run, batch: _Batch) -> None:
    """Send every plan (side by side when there are several senders); the reason to stop the run goes to `batch.stop`."""
    senders, planned = list(run.senders), batch.planned
    stop: list[str] = []

    def send_some(client: KeapClient, some: list[Work]) -> None:
        for w in some:
            if stop or batch.abandoned:
                return  # the quota is spent, the credential refused or the run failed: the rest are released unsent
            assert w.plan is not None
            w.sent = send(client, run.spec, w.plan, w.row or {}, batch.context)
            failure = w.sent.failure
            if failure is not None and failure.kind == "stop":
                stop.append(failure.reason)
            if failure is not None and isinstance(failure.error, KeapRateLimited):
                # throttled beyond the client's own retries: this sender stops for this batch; its
                # remaining items go back unsent (no attempt spent), the throttled one retries later
                return

    if len(senders) == 1:
        send_some(senders[0], planned)
    else:
        shares = [planned[i :: len(senders)] for i in range(len(senders))]
        with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="keap-push") as pool:
            for future in [pool.submit(send_some, c, s) for c, s in zip(senders, shares, strict=True) if s]:
                future.result()
    batch.stop = stop[0] if stop else None


def _write_back(run: _Run, batch: _Batch) -> None:
    """Step 5: Keap's answers to their rows and items finished; a plan never sent is released (no attempt spent)."""
    spec, key, report, planned = run.spec, run.lock.key, run.report, batch.planned
    answers = [r for w in planned if w.sent is not None for r in (w.sent.final or w.sent.created,) if r is not None]
    staged = spec.normalize(answers)
    backs: list[tuple[Work, str | None, bool]] = []
    finishes: list[db.Finish] = []
    for w in planned:
        sent = w.sent
        if sent is None:  # never sent: the run stopped first
            finishes.append(db.Finish(w.item.id, "release", unsent=True))
            continue
        failure = sent.failure
        record = sent.final if sent.final is not None else sent.created
        ident = None if record is None else str(record.get("id"))
        if failure is None and sent.final is not None and w.row is not None:
            failure = verify(spec, w.row, staged.values.get(ident or ""), staged.rejected.get(ident or ""), sent.columns,
                             batch.context)
        if failure is None:
            backs.append((w, ident, True))
            if sent.deleted:
                report.deleted += 1
            elif w.keap_id is None:
                report.created += 1
            else:
                report.updated += 1
            continue
        if ident is not None and ident in staged.ordinals:
            # Keap's record is known (a create's answer, or the record after the steps that worked): link it,
            # keep the row's values, and finish the item as the failure says
            backs.append((w, ident, False))
        if failure.kind in ("refused", "gone", "differs"):
            finishes.append(db.Finish(w.item.id, "failed", failure.reason, unsent=failure.unsent))
        elif failure.kind == "retry":
            finishes.append(db.Finish(
                w.item.id, "retry", failure.reason, retry_delay(run.settings, w.item.attempts + 1, run.rng),
                unsent=failure.unsent,
            ))
        else:
            finishes.append(db.Finish(w.item.id, "release", failure.reason, unsent=True))

    def write() -> dict[uuid.UUID, str]:
        rows = [
            db.WriteBack(w.item.id, w.item.entity_id, None if ident is None else staged.ordinals[ident], w.version, complete)
            for w, ident, complete in backs
        ]
        db.write_back(run.conn, key, spec.entity, staged.frame, rows)
        return db.finish(run.conn, key, finishes)

    _count_finished(report, run.tx(write, "write back"), finishes)


def entities_pushed() -> tuple[str, ...]:
    """The entities the pusher sends, in order."""
    return tuple(SPECS)


__all__ = ["ENTITIES", "PushReport", "PushSettings", "entities_pushed", "push", "retry_delay"]
