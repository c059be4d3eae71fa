-- 30: the outbound sender (issue 14): what a push needs in the queue and the audit log.
-- * sync_queue.claim_key: the pusher that holds an item (a random key; the pusher holds an advisory
--   lock on it for as long as it lives, so an item whose claimer's lock is gone belongs to a dead
--   pusher and is recovered: keap_pipeline.outbound_claim_alive). Set while an item is claimed
--   ('pending', being checked against Keap) and while it is in flight ('processing').
-- * sync_queue.sent_at: when a request for the item was last sent and its outcome is not known yet.
--   Marked in the transaction that puts the item in flight, BEFORE the request leaves; cleared when
--   Keap's answer is written back or when Keap surely did nothing (a 4xx, a 429). A record without a
--   keap_id whose items carry a sent_at may have been created in Keap already (a crash, a timeout):
--   the pusher looks it up before it creates again (Keap v2 has no idempotency key).
-- * Queue status 'unsupported': an item of an entity whose Keap write path the pusher does not have
--   yet (orders, subscriptions, products): kept with its reason, counted by an asset check, never
--   sent half-built and never dropped. 'error' is a failed item (a validation error, or attempts
--   used up) with the reason in error_message; `keap-pipeline push --retry-failed` sends it again.
-- * Audit sync_source 'push': the pusher's write-back (the created keap_id, Keap's update time and
--   content hash), written as the ingestion's role, so it is neither queued again nor taken for an
--   app edit; see sql/functions/20-sync-triggers.sql.
-- * Indexes for the claim: items in flight, items whose send is unconfirmed; failed and
--   unsupported items (the asset check counts them, and the ingestion asks for a record's
--   'unsupported' items once per batch: such an item is an unsent local change, as it was while
--   it was 'pending'; sql/functions/70-entity-template.sql).
-- Nothing here is rewritten: new nullable columns are catalog-only; the two widened CHECKs are added
-- NOT VALID and then validated (a scan under SHARE UPDATE EXCLUSIVE: writers are not blocked).

alter table public.sync_queue
    add column claim_key integer,
    add column sent_at timestamptz;

comment on column public.sync_queue.claim_key is
    'The pusher holding this item (advisory lock key it holds while alive); NULL when unclaimed.';
comment on column public.sync_queue.sent_at is
    'When a request for this item was last sent with its outcome not yet known (cleared on write-back or a sure refusal).';

-- Nothing wrote 'processing' before the pusher; an item some other worker left there without a
-- claimer is pending again (the pusher sends the record as it is now, so nothing is sent twice wrongly).
update public.sync_queue
set status = 'pending'
where status = 'processing'
  and claim_key is null
  and not exists (
      select 1
      from public.sync_queue as p
      where p.entity_type = sync_queue.entity_type
        and p.entity_id = sync_queue.entity_id
        and p.status = 'pending'
  );

alter table public.sync_queue
    drop constraint sync_queue_status_known;
alter table public.sync_queue
    add constraint sync_queue_status_known
        check (status in ('pending', 'processing', 'completed', 'error', 'cancelled', 'held', 'unsupported'))
        not valid;
alter table public.sync_queue
    validate constraint sync_queue_status_known;

alter table public.sync_queue
    add constraint sync_queue_in_flight_is_claimed
        check (status <> 'processing' or claim_key is not null)
        not valid;
alter table public.sync_queue
    validate constraint sync_queue_in_flight_is_claimed;

alter table public.sync_audit_log
    drop constraint sync_audit_log_sync_source_known;
alter table public.sync_audit_log
    add constraint sync_audit_log_sync_source_known
        check (sync_source in ('keap', 'supabase', 'manual', 'push'))
        not valid;
alter table public.sync_audit_log
    validate constraint sync_audit_log_sync_source_known;

-- Items in flight: the claim looks for those whose pusher died.
create index sync_queue_in_flight_idx
    on public.sync_queue (entity_type, started_at)
    where status = 'processing';

-- Sends whose outcome is unknown, by record: looked up before a record without a keap_id is created.
create index sync_queue_unconfirmed_send_idx
    on public.sync_queue (entity_type, entity_id)
    where sent_at is not null;

-- Failed and unsupported items: the asset check and sync_health count them; the ingestion reads a
-- batch's 'unsupported' records from here.
create index sync_queue_failed_idx
    on public.sync_queue (entity_type, status)
    where status in ('error', 'unsupported');
